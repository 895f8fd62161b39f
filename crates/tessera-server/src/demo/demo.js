// The demo page's script: calls tessera's API from the same origin with
// fetch, keeping nothing secret in reach of scripts. The session's CSRF token
// is the one thing the page holds, in memory; it is not a credential alone.
"use strict";

const $ = (id) => document.getElementById(id);
let csrf = null;

function credentials() {
  return { username: $("username").value, password: $("password").value };
}

async function call(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf && method !== "GET") headers["X-CSRF-Token"] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function show(label, answer) {
  $("out").textContent = `${label}: ${answer.status} ${JSON.stringify(answer.body)}`;
  $("cookies").textContent = JSON.stringify(document.cookie);
  $("storage").textContent = JSON.stringify({ ...localStorage });
  $("csrf").textContent = csrf ? "yes" : "none";
}

function on(id, label, action) {
  $(id).addEventListener("click", async () => show(label, await action()));
}

on("register", "register", () => call("POST", "/v1/users", credentials()));
on("session-login", "session login", async () => {
  const answer = await call("POST", "/v1/sessions", credentials());
  if (answer.status === 201) csrf = answer.body.csrf_token;
  return answer;
});
on("logout", "session logout", async () => {
  const answer = await call("DELETE", "/v1/sessions/current");
  if (answer.status === 204) csrf = null;
  return answer;
});
on("token-login", "token login", () => call("POST", "/v1/tokens?cookie=true", credentials()));
on("token-refresh", "token refresh", () => call("POST", "/v1/tokens/refresh"));
on("token-logout", "token logout", () => call("POST", "/v1/tokens/revoke"));
on("me", "me", () => call("GET", "/v1/me"));
show("ready", { status: 0, body: null });
