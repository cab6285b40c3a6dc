// The page's views: catalog, product, order, sign-in. Each render function fills `main` and
// returns a function that stops its live feeds.

import * as api from "./api.js";
import { el, fill, setText, money, flash, field } from "./dom.js";
import { followStream } from "./live.js";

function problemText(e) {
  if (!(e instanceof api.ApiError)) return String(e && e.message ? e.message : e);
  const fields = (e.errors || []).map((f) => `${f.field}: ${f.message}`);
  return fields.length ? `${e.message} (${fields.join("; ")})` : e.message;
}

function errorBox(e) {
  return el("p", { class: "error", role: "alert" }, problemText(e));
}

function stockText(n) {
  return n === 0 ? "sold out" : String(n);
}

// -- catalog ------------------------------------------------------------------------------------

export function catalog(ctx, query) {
  const category = query.get("category") || "";
  const rows = new Map(); // product id -> stock cell
  const unsubs = [];
  const tbody = el("tbody");
  const more = el("button", { type: "button", hidden: true }, "More products");
  const status = el("p", { class: "note", role: "status" });
  const form = el(
    "form",
    { role: "search", class: "inline" },
    field("Category", { name: "category", value: category, autocomplete: "off" }),
    el("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const c = form.elements.category.value.trim();
    location.hash = c ? `#/?category=${encodeURIComponent(c)}` : "#/";
  });
  fill(
    ctx.main,
    el(
      "section",
      { "aria-labelledby": "catalog-title" },
      el("h1", { id: "catalog-title" }, category ? `Catalog: ${category}` : "Catalog"),
      form,
      el(
        "table",
        { class: "products" },
        el("caption", { class: "visually-hidden" }, "Products with their live stock"),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, "Product"),
            el("th", { scope: "col", class: "num" }, "Price"),
            el("th", { scope: "col", class: "num" }, "In stock"),
          ),
        ),
        tbody,
      ),
      status,
      more,
    ),
  );
  ctx.feedState("ws");

  const show = (id, stock) => {
    const cell = rows.get(id);
    if (!cell) return;
    const text = stockText(stock);
    if (cell.textContent !== text) {
      setText(cell, text);
      cell.dataset.stock = String(stock);
      flash(cell);
    }
  };

  let cursor = null;
  let stopped = false;
  const load = async () => {
    more.hidden = true;
    setText(status, "Loading…");
    const from = cursor;
    let page;
    try {
      page = await api.listProducts({ category, cursor: from });
    } catch (e) {
      if (!stopped) fill(status, errorBox(e));
      return;
    }
    if (stopped) return;
    setText(status, rows.size + page.items.length === 0 ? "No products here." : "");
    const ids = [];
    for (const p of page.items) {
      if (rows.has(p.id)) continue;
      const cell = el(
        "span",
        { class: "stock", "aria-live": "polite", "aria-atomic": "true", "data-stock": p.stock },
        stockText(p.stock),
      );
      rows.set(p.id, cell);
      ids.push(p.id);
      tbody.appendChild(
        el(
          "tr",
          { "data-product-id": p.id, id: `row-${p.id}` },
          el("td", {}, el("a", { href: `#/products/${encodeURIComponent(p.id)}` }, p.name)),
          el("td", { class: "num" }, money(p.price_cents, p.currency)),
          el("td", { class: "num" }, cell),
        ),
      );
    }
    cursor = page.next_cursor;
    more.hidden = !cursor;
    // Subscribe, then read the page again once every subscription is confirmed: a change made
    // between the first read and the subscriptions is not lost.
    let waiting = ids.length;
    for (const id of ids)
      unsubs.push(
        ctx.socket.subscribe(`product:${id}`, {
          event: (m) => {
            if (m.type === "stock_changed" && m.data) show(m.data.product_id, m.data.stock);
          },
          subscribed: () => {
            if (--waiting !== 0) return;
            const mark = () => {
              // From here on only the feed changes these rows (the browser test waits for it).
              for (const i of ids) {
                const row = document.getElementById(`row-${i}`);
                if (row) row.dataset.live = "true";
              }
            };
            api
              .listProducts({ category, cursor: from })
              .then((again) => {
                if (!stopped) for (const p of again.items) show(p.id, p.stock);
              })
              .catch(() => {})
              .finally(mark);
          },
          error: (code, detail) => {
            if (code !== 503) ctx.feedState("ws", "error", `${detail} (${code})`);
          },
        }),
      );
  };
  more.addEventListener("click", load);
  load();
  return () => {
    stopped = true;
    for (const u of unsubs) u();
  };
}

// -- product --------------------------------------------------------------------------------------

const address_fields = [
  ["Full name", "name", "name"],
  ["Street address", "line1", "address-line1"],
  ["City", "city", "address-level2"],
  ["Postal code", "postal_code", "postal-code"],
  ["Country (two letters)", "country", "country"],
];

export function product(ctx, id) {
  const stock = el("span", { class: "stock", "aria-live": "polite", "aria-atomic": "true" }, "…");
  const body = el("div", {}, el("p", { role: "status" }, "Loading…"));
  fill(ctx.main, el("section", { "aria-labelledby": "product-title" }, body));
  ctx.feedState("sse");
  let stopped = false;
  let rendered = false;

  const render = (p) => {
    setText(stock, stockText(p.stock));
    stock.dataset.stock = String(p.stock);
    if (rendered) return;
    rendered = true;
    const s = api.session();
    let orderPart;
    if (!s) {
      orderPart = el(
        "p",
        {},
        el("a", { href: "#/signin", "data-return": location.hash }, "Sign in"),
        " to order.",
      );
    } else {
      const message = el("div", { "aria-live": "assertive" });
      const form = el(
        "form",
        { class: "order", "aria-labelledby": "order-title" },
        el("h2", { id: "order-title" }, "Order"),
        field("Quantity", { name: "quantity", type: "number", min: 1, max: 100, value: 1, required: true }),
        el(
          "fieldset",
          {},
          el("legend", {}, "Shipping address"),
          address_fields.map(([label, name, ac]) =>
            field(label, { name, autocomplete: ac, required: true, ...(name === "country" ? { value: "US", maxlength: 2 } : {}) }),
          ),
        ),
        el("button", { type: "submit" }, "Place order"),
        message,
      );
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const f = form.elements;
        const address = {};
        for (const [, name] of address_fields) address[name] = f[name].value.trim();
        address.country = address.country.toUpperCase();
        const button = form.querySelector("button[type=submit]");
        button.disabled = true;
        fill(message);
        try {
          const order = await api.placeOrder(
            [{ product_id: id, quantity: Number(f.quantity.value) }],
            address,
          );
          location.hash = `#/orders/${encodeURIComponent(order.id)}`;
        } catch (err) {
          fill(message, errorBox(err));
          button.disabled = false;
        }
      });
      orderPart = form;
    }
    fill(
      body,
      el("h1", { id: "product-title" }, p.name),
      el("p", { class: "sku" }, `SKU ${p.sku} · ${p.category}`),
      p.description ? el("p", { class: "description" }, p.description) : null,
      el(
        "dl",
        { class: "facts" },
        el("dt", {}, "Price"),
        el("dd", {}, money(p.price_cents, p.currency)),
        el("dt", {}, "In stock"),
        el("dd", {}, stock),
      ),
      orderPart,
    );
  };

  const reload = async () => {
    try {
      const p = await api.getProduct(id);
      if (!stopped) render(p);
    } catch (e) {
      if (!stopped && !rendered) fill(body, el("h1", { id: "product-title" }, "Product"), errorBox(e));
    }
  };
  const stop = followStream(`/products/${encodeURIComponent(id)}/events`, ["stock_changed"], {
    onOpen: reload,
    onEvent: (type, data) => {
      if (type !== "stock_changed" || !rendered) return;
      setText(stock, stockText(data.stock));
      stock.dataset.stock = String(data.stock);
      flash(stock);
    },
    onState: (state, detail) => ctx.feedState("sse", state, detail),
  });
  return () => {
    stopped = true;
    stop();
  };
}

// -- order -----------------------------------------------------------------------------------------

const status_words = {
  pending_payment: "awaiting payment",
  paid: "paid",
  shipped: "shipped",
  delivered: "delivered",
  cancelled: "cancelled",
};

export function order(ctx, id) {
  const s = api.session();
  if (!s) {
    fill(
      ctx.main,
      el(
        "section",
        { "aria-labelledby": "order-title" },
        el("h1", { id: "order-title" }, "Order"),
        el("p", {}, el("a", { href: "#/signin", "data-return": location.hash }, "Sign in"), " to see this order."),
      ),
    );
    ctx.feedState(null);
    return () => {};
  }
  const status = el("strong", { class: "status", "aria-live": "polite", "aria-atomic": "true" }, "…");
  const details = el("div");
  const actions = el("div", { class: "actions" });
  const message = el("div", { "aria-live": "assertive" });
  fill(
    ctx.main,
    el(
      "section",
      { "aria-labelledby": "order-title" },
      el("h1", { id: "order-title" }, "Order ", el("code", {}, id)),
      el("p", { class: "status-line" }, "Status: ", status),
      actions,
      message,
      details,
    ),
  );
  ctx.feedState("ws");
  let stopped = false;
  let current = null;

  const showStatus = (st) => {
    if (status.dataset.status === st) return;
    status.dataset.status = st;
    setText(status, status_words[st] || st);
    flash(status);
    renderActions(st);
  };
  const renderActions = (st) => {
    if (st !== "pending_payment") return fill(actions);
    const button = el("button", { type: "button" }, "Pay with the test card (tok_visa)");
    button.addEventListener("click", async () => {
      button.disabled = true;
      fill(message);
      try {
        const o = await api.pay(id, "tok_visa");
        if (!stopped) render(o);
      } catch (e) {
        if (!stopped) fill(message, errorBox(e));
        button.disabled = false;
      }
    });
    fill(actions, button);
  };
  const render = (o) => {
    current = o;
    showStatus(o.status);
    const a = o.shipping_address;
    fill(
      details,
      el(
        "table",
        { class: "lines" },
        el("caption", {}, "Items"),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, "Product"),
            el("th", { scope: "col", class: "num" }, "Quantity"),
            el("th", { scope: "col", class: "num" }, "Price"),
          ),
        ),
        el(
          "tbody",
          {},
          o.items.map((l) =>
            el(
              "tr",
              {},
              el("td", {}, el("a", { href: `#/products/${encodeURIComponent(l.product_id)}` }, l.name)),
              el("td", { class: "num" }, l.quantity),
              el("td", { class: "num" }, money(l.line_total_cents, o.currency)),
            ),
          ),
        ),
      ),
      el(
        "dl",
        { class: "facts" },
        el("dt", {}, "Subtotal"),
        el("dd", {}, money(o.subtotal_cents, o.currency)),
        el("dt", {}, "Shipping"),
        el("dd", {}, money(o.shipping_cents, o.currency)),
        el("dt", {}, "Total"),
        el("dd", {}, money(o.total_cents, o.currency)),
        el("dt", {}, "Ship to"),
        el("dd", {}, [a.name, a.line1, `${a.postal_code} ${a.city}`, a.country].join(", ")),
      ),
    );
  };
  const reload = async () => {
    try {
      const o = await api.getOrder(id);
      if (!stopped) render(o);
    } catch (e) {
      if (!stopped && !current) fill(message, errorBox(e));
    }
  };
  let pending = null;
  const unsubscribe = ctx.socket.subscribe(`order:${id}`, {
    // Read the order once the subscription stands: no change falls between the two.
    subscribed: () => reload(),
    event: (m) => {
      if (m.type !== "order_status" || !m.data) return;
      showStatus(m.data.status);
      // The rest of the order (payment, totals) from the API, once per burst of events.
      clearTimeout(pending);
      pending = setTimeout(reload, 300);
    },
    error: (code, detail) => {
      if (code === 404) fill(message, el("p", { class: "error", role: "alert" }, "No such order."));
      else if (code !== 503) ctx.feedState("ws", "error", `${detail} (${code})`);
    },
  });
  return () => {
    stopped = true;
    clearTimeout(pending);
    unsubscribe();
  };
}

// -- sign in / sign up ------------------------------------------------------------------------------

export function signin(ctx) {
  const back = () => {
    const r = sessionStorage.getItem("emporium.return") || "#/";
    sessionStorage.removeItem("emporium.return");
    location.hash = r;
  };
  const make = (title, fields, submitText, run) => {
    const message = el("div", { "aria-live": "assertive" });
    const idTitle = `${title.toLowerCase().replace(/\W+/g, "-")}-title`;
    const form = el(
      "form",
      { "aria-labelledby": idTitle },
      el("h2", { id: idTitle }, title),
      fields,
      el("button", { type: "submit" }, submitText),
      message,
    );
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      fill(message);
      try {
        await run(form.elements);
        back();
      } catch (err) {
        fill(message, errorBox(err));
        button.disabled = false;
      }
    });
    return form;
  };
  const s = api.session();
  fill(
    ctx.main,
    el(
      "section",
      { "aria-labelledby": "signin-title", class: "signin" },
      el("h1", { id: "signin-title" }, "Your account"),
      s
        ? el(
            "p",
            {},
            `Signed in as ${s.email || s.customer_id}. `,
            el("button", { type: "button", onclick: () => api.signOut() }, "Sign out"),
          )
        : null,
      make(
        "Sign in",
        [
          field("Email", { name: "email", type: "email", autocomplete: "username", required: true }),
          field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
        ],
        "Sign in",
        (f) => api.signIn(f.email.value.trim(), f.password.value),
      ),
      make(
        "Create an account",
        [
          field("Name", { name: "name", autocomplete: "name", required: true }),
          field("Email", { name: "email", type: "email", autocomplete: "email", required: true }),
          field("Password (8 characters or more)", {
            name: "password",
            type: "password",
            autocomplete: "new-password",
            minlength: 8,
            required: true,
          }),
        ],
        "Create account",
        (f) => api.signUp(f.name.value.trim(), f.email.value.trim(), f.password.value),
      ),
    ),
  );
  ctx.feedState(null);
  return () => {};
}
