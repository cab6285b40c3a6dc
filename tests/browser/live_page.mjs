// The live page in headless Chromium, driven by playwright-core (from npm, exact version in
// scripts/test.sh) against a server the calling test started and seeded:
//
//   node live_page.mjs <base URL> <seed.json>
//
// Environment: EMPORIUM_TEST_NODE_MODULES (where npm installed playwright-core),
// EMPORIUM_BROWSER_ADMIN_KEY, EMPORIUM_TEST_CHROMIUM (/usr/bin/chromium),
// EMPORIUM_BROWSER_ARTIFACTS (screenshots go there).
//
// It asserts: the page loads with no console error (a CSP violation is one), no uncaught
// exception and no failed request; a stock number on the catalog changes on screen when an
// order is placed through the API, and so does the product page's (Server-Sent Events); an
// order placed and paid in the page shows `paid`, then `shipped` when the admin ships it through
// the API; none of it reloads the page. Exit status 0 only when all of it held.

import { readFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { argv, env, exit, getuid } from "node:process";
import { pathToFileURL } from "node:url";

const [base, seedPath] = argv.slice(2);
if (!base || !seedPath) {
  console.error("usage: node live_page.mjs <base URL> <seed.json>");
  exit(2);
}
const modules = env.EMPORIUM_TEST_NODE_MODULES;
if (!modules) {
  console.error("EMPORIUM_TEST_NODE_MODULES is not set: run the suite through scripts/test.sh");
  exit(2);
}
const { chromium } = await import(
  pathToFileURL(join(modules, "playwright-core", "index.mjs")).href
);
const seed = JSON.parse(readFileSync(seedPath, "utf8"));
const adminKey = env.EMPORIUM_BROWSER_ADMIN_KEY;
const artifacts = env.EMPORIUM_BROWSER_ARTIFACTS || ".";
mkdirSync(artifacts, { recursive: true });
const STEP_MS = 20000; // the longest any one expectation may take to show

const problems = [];
const log = (...a) => console.log(new Date().toISOString(), ...a);

async function api(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method === "POST" && path === "/orders") headers["Idempotency-Key"] = crypto.randomUUID();
  const res = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} -> ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

const args = ["--disable-dev-shm-usage", "--no-first-run"];
if (getuid && getuid() === 0) args.push("--no-sandbox"); // Chromium's sandbox refuses root
const browser = await chromium.launch({
  executablePath: env.EMPORIUM_TEST_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args,
  timeout: 60000,
});
let failed = false;
let shot = 0;
const page = await (await browser.newContext({ viewport: { width: 1100, height: 900 } })).newPage();
page.setDefaultTimeout(STEP_MS);

page.on("console", (m) => {
  if (m.type() === "error") problems.push(`console error: ${m.text()}`);
});
page.on("pageerror", (e) => problems.push(`uncaught exception: ${e.message}`));
page.on("requestfailed", (r) => {
  const why = r.failure() ? r.failure().errorText : "failed";
  // The page closes an event stream when it leaves the product view: not a failure.
  if (why === "net::ERR_ABORTED" && r.url().includes("/events")) return;
  problems.push(`request failed: ${r.method()} ${r.url()}: ${why}`);
});
page.on("response", (r) => {
  if (r.status() >= 400) problems.push(`request answered ${r.status()}: ${r.request().method()} ${r.url()}`);
});
let loads = 0;
page.on("load", () => loads++);

async function screenshot(name) {
  const file = join(artifacts, `${String(++shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

async function step(name, fn) {
  log(`step: ${name}`);
  try {
    await fn();
  } catch (e) {
    failed = true;
    console.error(`FAILED: ${name}: ${e.stack || e}`);
    await screenshot(`failed-${name.replace(/\W+/g, "-")}`).catch(() => {});
    throw e;
  }
}

/** Waits until the feed indicator says live. */
async function feedLive() {
  await page.waitForSelector('#feed[data-state="live"]');
}

const [mugId, apronId] = seed.products;
try {
  await step("the catalog loads and lists the seeded products", async () => {
    await page.goto(`${base}/#/?category=${encodeURIComponent(seed.category)}`);
    // Each row is marked once its subscription is confirmed: from then on only the feed can
    // change its number (the page reads the list once more when all are confirmed).
    await page.waitForSelector(`tr[data-product-id="${mugId}"][data-live]`);
    await page.waitForSelector(`tr[data-product-id="${apronId}"][data-live]`);
    // The product name went in as text: its markup shows as characters, makes no element.
    const name = await page.textContent(`tr[data-product-id="${mugId}"] a`);
    if (name !== "Stoneware mug <b>&amp;") throw new Error(`the name shows as ${JSON.stringify(name)}`);
    if (await page.$(`tr[data-product-id="${mugId}"] b`)) throw new Error("a name became markup");
    await feedLive();
    await screenshot("catalog");
  });

  await step("a catalog stock number changes when an order is placed through the API", async () => {
    const cell = `tr[data-product-id="${mugId}"] .stock`;
    const before = Number(await page.getAttribute(cell, "data-stock"));
    await page.evaluate(() => (window.__noReload = true));
    await api("POST", "/orders", { items: [{ product_id: mugId, quantity: 3 }], shipping_address: seed.address }, seed.buyer.token);
    await page.waitForFunction(
      ([sel, want]) => document.querySelector(sel)?.textContent === String(want),
      [cell, before - 3],
    );
    if (!(await page.evaluate(() => window.__noReload === true))) throw new Error("the page reloaded");
    await screenshot("catalog-stock-changed");
  });

  await step("the product page follows its stock over Server-Sent Events", async () => {
    await page.click(`tr[data-product-id="${apronId}"] a`);
    await page.waitForSelector("#product-title");
    await feedLive();
    const cell = "dd .stock";
    await page.waitForFunction((sel) => document.querySelector(sel)?.dataset.stock !== undefined, cell);
    const before = Number(await page.getAttribute(cell, "data-stock"));
    await api("POST", "/orders", { items: [{ product_id: apronId, quantity: 2 }], shipping_address: seed.address }, seed.buyer.token);
    await page.waitForFunction(
      ([sel, want]) => document.querySelector(sel)?.textContent === String(want),
      [cell, before - 2],
    );
    if (!(await page.evaluate(() => window.__noReload === true))) throw new Error("the page reloaded");
    await screenshot("product-stock-changed");
  });

  let orderId;
  await step("a new customer signs up in the page and orders", async () => {
    await page.click("text=Sign in");
    await page.waitForSelector("#signin-title");
    const email = `page-${Date.now()}-${Math.floor(Math.random() * 1e9)}@example.com`;
    const signup = page.locator("form", { has: page.locator("#create-an-account-title") });
    await signup.getByLabel("Name").fill("Page Tester");
    await signup.getByLabel("Email").fill(email);
    await signup.getByLabel(/^Password/).fill("correct horse battery");
    await signup.getByRole("button", { name: "Create account" }).click();
    await page.waitForSelector("form.order"); // back on the product page, signed in
    const form = page.locator("form.order");
    await form.getByLabel("Quantity").fill("1");
    await form.getByLabel("Full name").fill(seed.address.name);
    await form.getByLabel("Street address").fill(seed.address.line1);
    await form.getByLabel("City").fill(seed.address.city);
    await form.getByLabel("Postal code").fill(seed.address.postal_code);
    await form.getByLabel(/^Country/).fill(seed.address.country);
    await screenshot("product-order-form");
    await form.getByRole("button", { name: "Place order" }).click();
    await page.waitForURL(/#\/orders\/ord_/);
    orderId = decodeURIComponent(new URL(page.url()).hash.split("/")[2]);
    await page.waitForSelector('.status[data-status="pending_payment"]');
    await feedLive();
    await screenshot("order-awaiting-payment");
  });

  await step("paying with tok_visa shows paid", async () => {
    await page.getByRole("button", { name: /tok_visa/ }).click();
    await page.waitForSelector('.status[data-status="paid"]');
    await screenshot("order-paid");
  });

  await step("the admin ships it through the API and the page shows shipped", async () => {
    const o = await api("POST", `/orders/${encodeURIComponent(orderId)}/ship`, undefined, adminKey);
    if (o.status !== "shipped") throw new Error(`ship answered ${o.status}`);
    await page.waitForSelector('.status[data-status="shipped"]');
    if ((await page.textContent(".status")) !== "shipped") throw new Error("the status text is not shipped");
    if (!(await page.evaluate(() => window.__noReload === true))) throw new Error("the page reloaded");
    await screenshot("order-shipped");
  });
} catch (e) {
  failed = true;
}

if (loads !== 1) problems.push(`the page loaded ${loads} times; once was expected`);
await browser.close();
for (const p of problems) console.error(`PROBLEM: ${p}`);
if (failed || problems.length) {
  console.error("the live page test FAILED");
  exit(1);
}
log("the live page test passed");
