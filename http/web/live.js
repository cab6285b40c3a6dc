// The live feeds: one WebSocket (/ws) shared by every subscription of the page, and Server-Sent
// Events (EventSource) for one product's stock. Both report their connection state, reconnect
// with back-off and resume where they stopped (the WebSocket with `after`, EventSource with
// Last-Event-ID, which it sends itself).

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;

/** The delay before reconnect attempt `n` (0, 1, ...): doubling, capped, with jitter. */
function backoff(n) {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** n);
  return Math.round(base / 2 + Math.random() * (base / 2));
}

/**
 * One WebSocket for the page. subscribe(topic, handlers) returns an unsubscribe function;
 * handlers: event(msg) for each event (seq in order, never twice), subscribed(seq) when the
 * server confirms (again after each reconnect), error(status, detail) for a refusal.
 * onState(state, detail) sees "connecting", "live", "reconnecting", "offline".
 */
export class LiveSocket {
  constructor(onState) {
    this.onState = onState;
    this.token = null;
    this.subs = new Map(); // topic -> {handlers, seq (last seen, or null), confirmed}
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.state = "idle";
    this.onRefused = null; // called when a connection with a token is refused before it opens
  }

  setState(state, detail = "") {
    this.state = state;
    this.onState(state, detail);
  }

  /** Uses `token` (a customer's session, or null) from now on; reconnects when it changed. */
  setToken(token) {
    if (token === this.token) return;
    this.token = token;
    if (this.ws || this.timer) this.restart();
  }

  subscribe(topic, handlers) {
    const sub = { handlers, seq: null, confirmed: false };
    this.subs.set(topic, sub);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.sendSubscribe(topic, sub);
    else this.ensureOpen();
    return () => {
      if (this.subs.get(topic) !== sub) return;
      this.subs.delete(topic);
      if (this.ws && this.ws.readyState === WebSocket.OPEN)
        this.ws.send(JSON.stringify({ unsubscribe: topic }));
    };
  }

  sendSubscribe(topic, sub) {
    const msg = { subscribe: topic };
    if (sub.seq !== null) msg.after = sub.seq;
    sub.confirmed = false;
    this.ws.send(JSON.stringify(msg));
  }

  ensureOpen() {
    if (this.ws || this.timer || this.subs.size === 0) return;
    this.open();
  }

  restart() {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = null;
      ws.close(1000);
    }
    clearTimeout(this.timer);
    this.timer = null;
    this.attempt = 0;
    for (const sub of this.subs.values()) sub.confirmed = false;
    if (this.subs.size === 0) this.setState("idle");
    else this.open();
  }

  open() {
    this.timer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let url = `${scheme}//${location.host}/ws`;
    if (this.token) url += `?access_token=${encodeURIComponent(this.token)}`;
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    const ws = new WebSocket(url);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.attempt = 0;
      this.setState("live");
      for (const [topic, sub] of this.subs) this.sendSubscribe(topic, sub);
    };
    ws.onmessage = (e) => this.receive(e.data);
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const sub of this.subs.values()) sub.confirmed = false;
      if (this.subs.size === 0) {
        this.setState("idle");
        return;
      }
      // Refused before it opened while carrying a token: the session may have ended (the
      // upgrade answers 401 then, which a page cannot see); let the page check it.
      if (!opened && this.token && this.onRefused) this.onRefused();
      const delay = backoff(this.attempt++);
      const why = e.code === 1001 ? "the server is restarting" : "connection lost";
      this.setState("offline", `${why}; retrying in ${Math.ceil(delay / 1000)} s`);
      this.timer = setTimeout(() => this.open(), delay);
    };
  }

  receive(text) {
    let m;
    try {
      m = JSON.parse(text);
    } catch (e) {
      return;
    }
    if (!m || typeof m !== "object") return;
    const sub = typeof m.topic === "string" ? this.subs.get(m.topic) : undefined;
    if (m.type === "subscribed") {
      if (!sub) return;
      sub.confirmed = true;
      if (sub.seq === null) sub.seq = m.seq;
      if (sub.handlers.subscribed) sub.handlers.subscribed(m.seq);
    } else if (m.type === "error") {
      if (sub && m.status === 410) {
        // Resuming is no longer possible: start again from the current state.
        sub.seq = null;
        if (sub.handlers.subscribed) sub.handlers.subscribed(null);
        if (this.ws && this.ws.readyState === WebSocket.OPEN) this.sendSubscribe(m.topic, sub);
        return;
      }
      if (sub && m.status === 503) {
        // The feed is unavailable for now: ask again later on this connection.
        setTimeout(() => {
          if (this.subs.get(m.topic) === sub && this.ws && this.ws.readyState === WebSocket.OPEN)
            this.sendSubscribe(m.topic, sub);
        }, backoff(2));
      }
      if (sub && sub.handlers.error) sub.handlers.error(m.status, m.detail);
    } else if (typeof m.seq === "number" && sub) {
      if (sub.seq !== null && m.seq <= sub.seq) return; // already seen
      sub.seq = m.seq;
      sub.handlers.event(m);
    }
  }
}

/**
 * Follows `url` (an event stream) with EventSource: onEvent(type, data, seq) per event, in
 * order; onOpen() each time the stream (re)starts; onState as for LiveSocket. EventSource
 * reconnects by itself, sending Last-Event-ID; when it gives up (an error answer instead of a
 * stream), this starts a new one with ?after= the last id seen, after a back-off. Returns a
 * function that stops it.
 */
export function followStream(url, types, { onEvent, onOpen, onState }) {
  let source = null;
  let last = null;
  let attempt = 0;
  let timer = null;
  let stopped = false;

  const connect = () => {
    timer = null;
    const target = last === null ? url : `${url}${url.includes("?") ? "&" : "?"}after=${last}`;
    onState(attempt === 0 ? "connecting" : "reconnecting");
    source = new EventSource(target);
    source.onopen = () => {
      attempt = 0;
      onState("live");
      onOpen();
    };
    for (const type of types)
      source.addEventListener(type, (e) => {
        const seq = Number(e.lastEventId);
        if (last !== null && seq <= last) return;
        last = seq;
        let data = null;
        try {
          data = JSON.parse(e.data);
        } catch (err) {
          return;
        }
        onEvent(type, data, seq);
      });
    source.onerror = () => {
      if (stopped) return;
      if (source.readyState === EventSource.CONNECTING) {
        onState("reconnecting");
        return;
      }
      source.close();
      // Refused twice while resuming: the server may no longer keep that far back (410);
      // start from the current state (onOpen reloads it).
      if (last !== null && attempt >= 1) last = null;
      const delay = backoff(attempt++);
      onState("offline", `stream refused; retrying in ${Math.ceil(delay / 1000)} s`);
      timer = setTimeout(connect, delay);
    };
  };
  connect();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    if (source) source.close();
  };
}
