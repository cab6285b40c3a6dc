// The REST API as the page uses it: JSON in and out, the session in sessionStorage, every error
// an ApiError carrying the problem+json detail.

const SESSION_KEY = "emporium.session";

export class ApiError extends Error {
  constructor(status, detail, errors) {
    super(detail);
    this.status = status;
    this.errors = errors || [];
  }
}

/** The signed-in customer's session ({token, customer_id, expires_at}), or null. */
export function session() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (s && typeof s.token === "string" && Date.parse(s.expires_at) > Date.now()) return s;
  } catch (e) {
    // a damaged entry is no session
  }
  return null;
}

function saveSession(s) {
  if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(SESSION_KEY);
  window.dispatchEvent(new CustomEvent("emporium:session"));
}

export function signOut() {
  saveSession(null);
}

async function call(method, path, body, headers = {}) {
  const h = { Accept: "application/json", ...headers };
  const s = session();
  if (s) h.Authorization = `Bearer ${s.token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "the server cannot be reached");
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!res.ok) {
    if (res.status === 401 && s) saveSession(null);
    const detail = (data && data.detail) || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, detail, data && data.errors);
  }
  return data;
}

export function listProducts({ category, cursor, limit = 20 } = {}) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (category) q.set("category", category);
  if (cursor) q.set("cursor", cursor);
  return call("GET", `/products?${q}`);
}

export const getProduct = (id) => call("GET", `/products/${encodeURIComponent(id)}`);
export const getOrder = (id) => call("GET", `/orders/${encodeURIComponent(id)}`);

export async function signIn(email, password) {
  const s = await call("POST", "/sessions", { email, password });
  saveSession({ token: s.token, customer_id: s.customer_id, expires_at: s.expires_at, email });
  return s;
}

export async function signUp(name, email, password) {
  await call("POST", "/customers", { name, email, password });
  return signIn(email, password);
}

function idempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function placeOrder(items, shippingAddress) {
  return call(
    "POST",
    "/orders",
    { items, shipping_address: shippingAddress },
    { "Idempotency-Key": idempotencyKey() },
  );
}

export const pay = (orderId, method) =>
  call("POST", `/orders/${encodeURIComponent(orderId)}/payments`, { payment_method: method });

/** Reads the signed-in customer's profile: a session the server no longer knows (401) ends. */
export function checkSession() {
  const s = session();
  if (!s) return Promise.resolve(null);
  return call("GET", `/customers/${encodeURIComponent(s.customer_id)}`).catch(() => null);
}
