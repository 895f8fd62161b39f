// Drives tessera's /demo page in Debian's Chromium (playwright-core) and
// checks what a page script can and cannot reach. Prints one line per step;
// exits 1 at the first failed expectation.
import { chromium } from "playwright-core";

const base = process.argv[2];
const username = `browser_${process.pid}_${Date.now()}`;
const password = "correct horse battery staple";

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  await page.goto(`${base}/demo`);

  // Clicks a button and waits for the page to show that step's answer.
  async function step(button, label, expected) {
    await page.evaluate(() => { document.getElementById("out").textContent = ""; });
    await page.click(`#${button}`);
    const out = page.locator("#out");
    await out.filter({ hasText: `${label}:` }).waitFor({ timeout: 10_000 });
    const text = await out.textContent();
    if (!expected.test(text)) fail(`${button}: expected ${expected}, got ${text}`);
    console.log(`ok ${button}: ${text.slice(0, 100)}`);
    return text;
  }

  // Nothing a script can read may hold a credential.
  async function scriptSeesNothing(when) {
    const seen = await page.evaluate(() => ({ cookie: document.cookie, storage: { ...localStorage } }));
    if (seen.cookie !== "") fail(`${when}: document.cookie is ${JSON.stringify(seen.cookie)}`);
    if (Object.keys(seen.storage).length !== 0) fail(`${when}: localStorage holds ${JSON.stringify(seen.storage)}`);
    console.log(`ok ${when}: document.cookie and localStorage are empty`);
  }

  // The browser itself holds the cookie, HttpOnly, for the page's requests.
  async function browserHolds(name, path) {
    const cookies = await context.cookies(base);
    const all = await context.cookies();
    const cookie = all.find((c) => c.name === name);
    if (!cookie) fail(`no ${name} cookie in the browser: ${JSON.stringify(cookies)}`);
    if (!cookie.httpOnly) fail(`${name} is not HttpOnly`);
    if (cookie.path !== path) fail(`${name} has path ${cookie.path}, not ${path}`);
    console.log(`ok browser holds ${name} (HttpOnly, SameSite=${cookie.sameSite}, Path=${cookie.path})`);
  }

  await page.fill("#username", username);
  await page.fill("#password", password);
  await step("register", "register", /^register: 201 /);

  // Sessions.
  await step("session-login", "session login", /^session login: 201 /);
  await browserHolds("tessera_session", "/");
  await scriptSeesNothing("after session login");
  await step("me", "me", /^me: 200 .*"method":"session"/);
  // A script that injects a request without the CSRF token is refused.
  const forged = await page.evaluate(async () => (await fetch("/v1/sessions", { method: "DELETE" })).status);
  if (forged !== 403) fail(`a DELETE without the CSRF token got ${forged}, not 403`);
  console.log("ok a request without the CSRF token is refused (403)");
  await step("logout", "session logout", /^session logout: 204 /);
  await step("me", "me", /^me: 401 /);
  const left = (await context.cookies()).filter((c) => c.name === "tessera_session");
  if (left.length !== 0) fail("the session cookie survived logout");

  // Tokens in cookies.
  await step("token-login", "token login", /^token login: 200 \{(?!.*access_token)(?!.*refresh_token).*"token_type":"Bearer"/);
  await browserHolds("tessera_access", "/");
  await browserHolds("tessera_refresh", "/v1/tokens");
  await scriptSeesNothing("after token login");
  await step("me", "me", /^me: 200 .*"method":"cookie_token"/);
  await step("token-refresh", "token refresh", /^token refresh: 200 /);
  await step("me", "me", /^me: 200 .*"method":"cookie_token"/);
  await step("token-logout", "token logout", /^token logout: 200 /);
  await step("me", "me", /^me: 401 /);
  // The device cookie stays on purpose: it is no credential, only the proof
  // that this browser once logged in (the throttle never locks it out).
  const cookiesLeft = await context.cookies();
  const device = cookiesLeft.find((c) => c.name === "tessera_device");
  if (!device || !device.httpOnly || device.sameSite !== "Strict") fail(`the device cookie is missing or readable: ${JSON.stringify(device)}`);
  const tokensLeft = cookiesLeft.filter((c) => c.name.startsWith("tessera_") && c.name !== "tessera_device");
  if (tokensLeft.length !== 0) fail(`cookies survived the token logout: ${tokensLeft.map((c) => c.name)}`);
  console.log("ok the token logout cleared every token cookie");
  await scriptSeesNothing("at the end");
  console.log("browser test passed");
} catch (e) {
  if (!process.exitCode) {
    console.error(`FAIL: ${e.message}`);
    process.exitCode = 1;
  }
} finally {
  await browser.close();
}
