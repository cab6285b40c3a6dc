// The live page's shell: the hash router (#/, #/products/ID, #/orders/ID, #/signin), the
// account link, the live-feed indicator, and the one WebSocket every view shares.

import * as api from "./api.js";
import { el, fill, setText } from "./dom.js";
import { LiveSocket } from "./live.js";
import * as pages from "./pages.js";

const main = document.getElementById("main");
const feed = document.getElementById("feed");
const account = document.getElementById("account");

const state_words = {
  idle: "idle",
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting…",
  offline: "offline",
  error: "error",
};

// Which feed the current view follows ("ws", "sse" or null), and each one's state.
let shown = null;
const states = { ws: ["idle", ""], sse: ["idle", ""] };

function showFeed() {
  if (!shown) {
    feed.hidden = true;
    return;
  }
  feed.hidden = false;
  const [state, detail] = states[shown];
  feed.dataset.state = state;
  const how = shown === "ws" ? "WebSocket" : "Server-Sent Events";
  setText(feed, `Live updates (${how}): ${state_words[state] || state}${detail ? ` (${detail})` : ""}`);
}

const socket = new LiveSocket((state, detail) => {
  states.ws = [state, detail];
  if (shown === "ws") showFeed();
});
socket.onRefused = () => api.checkSession();

const ctx = {
  main,
  socket,
  /** feedState(kind): this view follows `kind`; feedState(kind, state, detail): its state. */
  feedState(kind, state, detail = "") {
    if (state === undefined) {
      shown = kind;
      if (kind === "sse") states.sse = ["connecting", ""];
    } else {
      states[kind] = [state, detail];
    }
    showFeed();
  },
};

function renderAccount() {
  const s = api.session();
  socket.setToken(s ? s.token : null);
  fill(
    account,
    s
      ? [
          el("span", { class: "who" }, `Signed in as ${s.email || s.customer_id}`),
          " ",
          el("button", { type: "button", class: "link", onclick: () => api.signOut() }, "Sign out"),
        ]
      : el("a", { href: "#/signin" }, "Sign in or create an account"),
  );
}

let stop = () => {};

function route() {
  stop();
  stop = () => {};
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, queryText] = hash.split("?", 2);
  const query = new URLSearchParams(queryText || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  let title = "Catalog";
  if (parts.length === 0) {
    stop = pages.catalog(ctx, query);
  } else if (parts[0] === "products" && parts.length === 2) {
    title = "Product";
    stop = pages.product(ctx, parts[1]);
  } else if (parts[0] === "orders" && parts.length === 2) {
    title = "Order";
    stop = pages.order(ctx, parts[1]);
  } else if (parts[0] === "signin" && parts.length === 1) {
    title = "Your account";
    stop = pages.signin(ctx);
  } else {
    title = "Not found";
    ctx.feedState(null);
    fill(main, el("h1", {}, "Not found"), el("p", {}, el("a", { href: "#/" }, "Back to the catalog")));
  }
  document.title = `${title} · Emporium`;
  main.focus({ preventScroll: true });
}

document.addEventListener("click", (e) => {
  const target = e.target instanceof Element ? e.target : null;
  // The skip link moves the focus; the hash belongs to the router.
  if (target && target.closest("a.skip")) {
    e.preventDefault();
    main.focus();
    return;
  }
  // A sign-in link remembers where to come back to.
  const a = target ? target.closest("a[href='#/signin']") : null;
  if (a) sessionStorage.setItem("emporium.return", a.dataset.return || location.hash || "#/");
});

window.addEventListener("emporium:session", () => {
  renderAccount();
  route();
});
window.addEventListener("hashchange", route);
renderAccount();
route();
