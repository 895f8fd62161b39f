// Drives tessera's account pages in Debian's Chromium (playwright-core):
//
//   node test.mjs BASE_URL session|token SCREENSHOT_DIR
//
// sign up → log in (a session cookie, or a token in a cookie) → the account
// page shows the user and the method → a second browser appears as a device
// → signing it out logs it out → (token: the access token expires and the
// page survives by refreshing) → the tamper demonstration is refused → a
// password change signs out the other devices → log out → the account page
// sends a logged-out browser to log in. Every page is checked with axe-core
// (no serious or critical violation) and photographed at desktop and phone
// width. At every step no page script can see a credential. Prints one line
// per step; exits 1 at the first failed expectation.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import AxeBuilder from "@axe-core/playwright";

const [base, mode, shots] = process.argv.slice(2);
if (!base || !["session", "token"].includes(mode) || !shots) {
  console.error("usage: node test.mjs BASE_URL session|token SCREENSHOT_DIR");
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
console.log(`screenshots: ${shots}`);
const username = `pages_${mode}_${process.pid}_${Date.now()}`;
const password = "correct horse battery staple";
const newPassword = "quiet walnut ladder sunrise";
const firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

function fail(message) {
  process.exitCode = 1;
  throw new Error(message);
}
function ok(message) {
  console.log(`ok ${message}`);
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: DESKTOP, ...options });
  const page = await context.newPage();
  page.on("pageerror", (e) => fail(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A refused login answers 401 with its page: not a script problem. A CSP
    // violation ("Refused to ...") is.
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) fail(`console error: ${m.text()}`);
  });
  return { context, page };
}

// Nothing a script can read may hold a credential.
async function scriptSeesNothing(page, when) {
  const seen = await page.evaluate(() => ({ cookie: document.cookie, storage: { ...localStorage }, session: { ...sessionStorage } }));
  if (seen.cookie !== "") fail(`${when}: document.cookie is ${JSON.stringify(seen.cookie)}`);
  if (Object.keys(seen.storage).length !== 0) fail(`${when}: localStorage holds ${JSON.stringify(seen.storage)}`);
  if (Object.keys(seen.session).length !== 0) fail(`${when}: sessionStorage holds ${JSON.stringify(seen.session)}`);
  ok(`${when}: document.cookie and localStorage are empty`);
}

// axe-core at both widths, and a screenshot of each.
async function check(page, name) {
  for (const [width, size] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await page.setViewportSize(size);
    const results = await new AxeBuilder({ page }).analyze();
    const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
    if (bad.length) {
      fail(`axe on ${name} (${width}): ${bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target).join(", ")}`).join("; ")}`);
    }
    // Nothing wider than the screen: a phone must never scroll sideways.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) fail(`${name} (${width}) is ${overflow}px wider than the screen`);
    const file = join(shots, `${mode}-${name}-${width}.png`);
    await page.screenshot({ path: file, fullPage: true });
  }
  await page.setViewportSize(DESKTOP);
  ok(`${name}: axe finds no serious or critical violation; screenshots saved`);
}

function path(page) {
  return new URL(page.url()).pathname;
}

async function logIn(page, how, user = username, pass = password) {
  await page.goto(`${base}/login`);
  await page.fill("#username", user);
  await page.fill("#password", pass);
  await page.check(how === "token" ? "#method-token" : "#method-session");
  await Promise.all([page.waitForURL(/\/account/), page.click("button[type=submit]")]);
  if (path(page) !== "/account") fail(`login led to ${page.url()}`);
}

async function expectLoggedOut(page, who) {
  await page.goto(`${base}/account`);
  if (path(page) !== "/login") fail(`${who}: /account did not lead to /login but to ${page.url()}`);
  ok(`${who}: /account leads to the login page`);
}

try {
  const a = await newPage();
  const b = await newPage({ userAgent: firefox });

  // Sign up.
  await a.page.goto(`${base}/signup`);
  await check(a.page, "signup");
  await a.page.fill("#username", username);
  await a.page.fill("#password", password);
  await Promise.all([a.page.waitForURL(/\/login/), a.page.click("button[type=submit]")]);
  if (!(await a.page.textContent(".notice")).includes("account is ready")) fail("no notice after sign-up");
  ok("signed up; the login page says so");
  await check(a.page, "login");

  // Log in; the account page names the user and the method.
  await logIn(a.page, mode);
  const method = await a.page.getAttribute("#method", "data-method");
  const wantMethod = mode === "token" ? "cookie_token" : "session";
  if (method !== wantMethod) fail(`the account page says ${method}, not ${wantMethod}`);
  if ((await a.page.textContent("#username")) !== username) fail("the account page does not show the user");
  ok(`the account page shows ${username}, authenticated by ${method}`);
  await scriptSeesNothing(a.page, `after the ${mode} login`);
  await check(a.page, "account");

  // A second browser appears as a device; signing it out logs it out.
  await logIn(b.page, mode);
  await a.page.goto(`${base}/account`);
  const devices = a.page.locator("li.device");
  if ((await devices.count()) !== 2) fail(`${await devices.count()} devices listed, not 2`);
  const other = devices.filter({ hasText: "Firefox on Linux" });
  if ((await other.count()) !== 1) fail("the second browser is not listed as Firefox on Linux");
  ok("the second browser is listed as a device (Firefox on Linux)");
  for (let attempt = 0; ; attempt++) {
    // As for tamper and the password change below: a 5 s token may expire
    // between the page and the click; the page renews it and asks again.
    await Promise.all([a.page.waitForURL(/notice=(device_ended|retry)/), other.locator("button").click()]);
    if (a.page.url().includes("device_ended")) break;
    if (attempt === 2) fail("signing the device out kept meeting an expired token");
  }
  if ((await devices.count()) !== 1) fail("the device is still listed after signing it out");
  ok("signed the second browser out from the device list");
  await expectLoggedOut(b.page, "the signed-out browser");

  if (mode === "token") {
    // The access token (--access-ttl 5s) expires; the page survives by
    // going through /v1/tokens/resume, which refreshes from the refresh cookie.
    // A fresh page first: on a busy machine the earlier steps may already
    // have outlived the 5 s token (and gone through resume).
    // The page may have been served with a token in its last moments: its
    // cookie (Max-Age = the token's lifetime) can expire before it is read.
    // Then the next visit renews it, and that token has its 5 s ahead.
    let before;
    for (let attempt = 0; attempt < 2 && !before; attempt++) {
      await a.page.goto(`${base}/account`);
      before = (await a.context.cookies()).find((c) => c.name === "tessera_access");
    }
    if (!before) fail("no access-token cookie");
    await a.page.waitForTimeout(6000);
    const gone = (await a.context.cookies()).find((c) => c.name === "tessera_access");
    if (gone) fail("the access-token cookie outlived its token");
    await a.page.goto(`${base}/account`);
    if (path(a.page) !== "/account") fail(`after the access token expired, /account led to ${a.page.url()}`);
    const after = (await a.context.cookies()).find((c) => c.name === "tessera_access");
    if (!after || after.value === before.value) fail("no fresh access token after the expiry");
    const refresh = (await a.context.cookies()).find((c) => c.name === "tessera_refresh");
    if (!refresh || refresh.path !== "/v1/tokens" || !refresh.httpOnly) fail(`the refresh cookie is ${JSON.stringify(refresh && { path: refresh.path, httpOnly: refresh.httpOnly })}`);
    ok("the access token expired and the page refreshed it through /v1/tokens/resume");
    await scriptSeesNothing(a.page, "after the refresh");
  }

  // Tamper: the server alters the credential and verifies it.
  await a.page.goto(`${base}/account`);
  if (mode === "token") await a.page.fill("#sub", "1");
  await Promise.all([a.page.waitForURL(/\/account(\/tamper|\?notice=retry)/), a.page.click("#tamper")]);
  if (a.page.url().includes("notice=retry")) {
    // The 5 s token expired between the page and the click: the page
    // renewed it and asks to try again, as a person would.
    if (mode === "token") await a.page.fill("#sub", "1");
    await Promise.all([a.page.waitForURL(/\/account\/tamper/), a.page.click("#tamper")]);
  }
  const verdict = await a.page.textContent("#verdict");
  const want = mode === "token" ? "refused: bad signature" : "refused: no such session";
  if (verdict !== want) fail(`the tamper verdict is ${verdict}, not ${want}`);
  ok(`the tamper demonstration: ${verdict}`);
  await scriptSeesNothing(a.page, "after tampering");
  await check(a.page, "tampered");

  // A password change signs out the other devices.
  await logIn(b.page, mode);
  for (let attempt = 0; ; attempt++) {
    await a.page.goto(`${base}/account`);
    await a.page.fill("#current-password", password);
    await a.page.fill("#new-password", newPassword);
    await Promise.all([a.page.waitForURL(/notice=(password_changed|retry)/), a.page.click("#password-h ~ form button")]);
    if (a.page.url().includes("password_changed")) break;
    if (attempt === 2) fail("the password change kept meeting an expired token");
  }
  if ((await a.page.locator("li.device").count()) !== 1) fail("other devices remain after the password change");
  ok("changed the password; this browser stays signed in");
  await check(a.page, "password-changed");
  await expectLoggedOut(b.page, "the other browser after the password change");

  // Log out; the account page then leads to the login page.
  await Promise.all([a.page.waitForURL(/\/login/), a.page.click(".title-row button")]);
  ok("signed out");
  const left = (await a.context.cookies()).filter((c) => c.name.startsWith("tessera_") && c.name !== "tessera_device");
  if (left.length) fail(`credential cookies survived the sign-out: ${left.map((c) => c.name)}`);
  await expectLoggedOut(a.page, "this browser after signing out");
  await scriptSeesNothing(a.page, "at the end");

  // The new password works, the old one does not.
  await a.page.goto(`${base}/login`);
  await a.page.fill("#username", username);
  await a.page.fill("#password", password);
  await a.page.click("button[type=submit]");
  await a.page.locator(".error").waitFor();
  await check(a.page, "login-error");
  await logIn(a.page, mode, username, newPassword);
  ok("the old password is refused and the new one works");
  console.log(`browser test passed (${mode})`);
} catch (e) {
  process.exitCode = 1;
  console.error(`FAIL: ${e.message}`);
} finally {
  await browser.close();
}
