// The sign-in page: an access key pair (with its session token, if it has one)
// or the console token the server made at start. The form posts JSON with
// fetch, so no credential ever lands in the URL, the browser history or the
// page's HTML; the fields are cleared as soon as the request is sent.
import { el, safeNext, setBreadcrumb } from "./format.js";

export function renderSignIn(main) {
  document.title = "Sign in · Sageport";
  setBreadcrumb([["Sign in", null]]);
  const next = safeNext(new URLSearchParams(window.location.search).get("next"));

  const byKey = el("input", { type: "radio", name: "method", id: "method-key", value: "key", checked: true });
  const byToken = el("input", { type: "radio", name: "method", id: "method-token", value: "token" });
  const keyId = el("input", { type: "text", id: "access-key-id", autocomplete: "username", spellcheck: "false" });
  const secret = el("input", { type: "password", id: "secret-access-key", autocomplete: "current-password" });
  const sessionToken = el("input", { type: "password", id: "session-token", autocomplete: "off" });
  const token = el("input", { type: "password", id: "console-token", autocomplete: "off" });
  const problem = el("p", { id: "sign-in-problem", class: "alert", role: "alert", hidden: true });
  const submit = el("button", { type: "submit", class: "primary", text: "Sign in" });

  const keyFields = el("fieldset", {},
    el("legend", { class: "visually-hidden", text: "Access key" }),
    el("label", { for: "access-key-id", text: "Access key ID" }), keyId,
    el("label", { for: "secret-access-key", text: "Secret access key" }), secret,
    el("label", { for: "session-token", text: "Session token (only for keys created with --session-token)" }), sessionToken);
  const tokenFields = el("fieldset", { hidden: true },
    el("legend", { class: "visually-hidden", text: "Console token" }),
    el("label", { for: "console-token", text: "Token" }), token,
    el("p", { class: "muted", text: "The server writes it to the file console-token in its data directory at every start, and prints it when its output is a terminal." }));

  function showMethod() {
    keyFields.hidden = !byKey.checked;
    tokenFields.hidden = byKey.checked;
    (byKey.checked ? keyId : token).focus();
  }
  byKey.addEventListener("change", showMethod);
  byToken.addEventListener("change", showMethod);

  // method="post" keeps the fields out of the URL even if this script fails to run.
  const form = el("form", { class: "sign-in", method: "post", action: "/console/signin", "aria-labelledby": "sign-in-title", onsubmit: (event) => { event.preventDefault(); signIn(); } },
    el("h1", { id: "sign-in-title", text: "Sign in to Sageport" }),
    el("p", { class: "muted", text: "This server checks every request. Sign in with an access key from sageport keys create, or with the console token." }),
    el("div", { class: "choice", role: "radiogroup", "aria-label": "Sign in with" },
      byKey, el("label", { for: "method-key", text: "Access key" }),
      byToken, el("label", { for: "method-token", text: "Console token" })),
    keyFields, tokenFields, problem, submit);
  main.replaceChildren(form);
  keyId.focus();

  async function signIn() {
    const credentials = byKey.checked
      ? { access_key_id: keyId.value.trim(), secret_access_key: secret.value.trim(), session_token: sessionToken.value.trim() || null }
      : { console_token: token.value.trim() };
    for (const field of [secret, sessionToken, token]) field.value = "";
    submit.disabled = true;
    problem.hidden = true;
    try {
      const response = await fetch("/console/api/session", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(credentials),
        credentials: "same-origin",
      });
      const payload = await response.json();
      if (response.ok) {
        // replace() keeps the sign-in page out of the back button's history.
        window.location.replace(next);
        return;
      }
      problem.textContent = payload.error?.message || `Sign-in failed: HTTP ${response.status}.`;
      if (response.status === 429) {
        // The server rejects every attempt until Retry-After passes, so the button waits too.
        const seconds = Number(response.headers.get("Retry-After")) || 1;
        problem.hidden = false;
        window.setTimeout(() => { submit.disabled = false; }, seconds * 1000);
        return;
      }
    } catch (error) {
      problem.textContent = `The console could not reach the server: ${error.message}`;
    }
    problem.hidden = false;
    submit.disabled = false;
    (byKey.checked ? secret : token).focus();
  }
}
