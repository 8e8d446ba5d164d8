// Signing in with a bearer token: when the query server answers 401, a small panel asks
// for a token, which is kept in sessionStorage (this tab only, gone when it closes) and
// sent with every request from then on; the view is then loaded again. Behind a
// single-sign-on proxy the server never answers 401, and the panel never shows.

import { onUnauthorized, storeToken, storedToken } from "./api.js";

const $ = (id) => document.getElementById(id);

/** Wire the panel and the sign-out button; `retry()` loads the current view again. */
export function initSignIn(retry) {
  const panel = $("signin");
  const input = $("signin-token");
  onUnauthorized((messages) => {
    if (!panel.hidden) return; // several requests of one view fail together
    const why = messages.filter(Boolean).join("; ");
    $("signin-reason").textContent = storedToken()
      ? `The query server refused the token${why ? ` (${why})` : ""}. Paste a new one.`
      : `The query server asks for an access token${why ? ` (${why})` : ""}.`;
    panel.hidden = false;
    input.focus();
  });
  panel.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim().replace(/^Bearer\s+/i, "");
    if (!token) {
      input.focus();
      return;
    }
    storeToken(token);
    input.value = "";
    panel.hidden = true;
    showSignOut();
    retry();
  });
  $("signin-cancel").addEventListener("click", () => {
    input.value = "";
    panel.hidden = true;
  });
  $("signout").addEventListener("click", () => {
    storeToken("");
    showSignOut();
    retry();
  });
  showSignOut();
}

function showSignOut() {
  $("signout").hidden = !storedToken();
}
