// The console's entry point: pick the view for the current path, and show who is signed in.
import { renderList } from "./list.js";
import { renderEndpoint } from "./endpoint.js";
import { renderSignIn } from "./signin.js";
import { csrfHeaders, el, loadSession } from "./format.js";

const ENDPOINT_PREFIX = "/console/endpoints/";
const SIGN_IN_PATH = "/console/signin";

function route() {
  const main = document.getElementById("main");
  const path = window.location.pathname;
  if (path === SIGN_IN_PATH) {
    renderSignIn(main);
  } else if (path.startsWith(ENDPOINT_PREFIX)) {
    const name = decodeURIComponent(path.slice(ENDPOINT_PREFIX.length).replace(/\/$/, ""));
    renderEndpoint(main, name);
  } else {
    renderList(main);
  }
}

async function showAccount() {
  const session = await loadSession();
  if (!session?.signed_in) return;
  const signOut = el("button", { type: "button", id: "sign-out", text: "Sign out", onclick: async () => {
    signOut.disabled = true;
    await fetch("/console/api/signout", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...(await csrfHeaders()) },
      body: "{}",
      credentials: "same-origin",
    });
    window.location.replace(SIGN_IN_PATH);
  } });
  document.getElementById("account").replaceChildren(
    el("span", { id: "signed-in-as", text: `Signed in as ${session.user}` }), signOut);
}

// "/" focuses the search box, as in Studio, unless the user is typing somewhere.
document.addEventListener("keydown", (event) => {
  const target = event.target;
  const typing = target.closest?.("input, textarea, select, [contenteditable=true], .cm-editor");
  if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    const search = document.getElementById("endpoint-search");
    if (search) {
      event.preventDefault();
      search.focus();
    }
  }
});

window.addEventListener("popstate", route);
route();
if (window.location.pathname !== SIGN_IN_PATH) showAccount();
