// The booking page. Plain JavaScript, no build step: it talks to the public API of the same
// origin and follows the seat map through the seat-map stream (Server-Sent Events). The seat
// map changes only through that stream, never by re-reading it after an action, so what the
// page shows is what every other visitor sees.
"use strict";

(() => {
  const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
  const STORE_USER = "booking.userId";
  const STORE_CONCERT = "booking.concertId";
  const STORE_DATE = "booking.dateId";
  // MAX_PICK is the most seats one hold may ask for (the contract's 1–8 seatNos).
  const MAX_PICK = 8;

  const el = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  // ?concert=…&date=… picks the date to show, so a seat map can be linked to.
  const linked = new URLSearchParams(location.search);

  // Everything the page knows. The admin token lives here (and in its input) only: it is
  // never written to any storage.
  const S = {
    user: "",
    token: null,
    tokenPoll: 0,
    concerts: new Map(), // concertId → title
    concert: "",
    date: "",
    es: null,
    esRetry: 0,
    seats: new Map(), // seatNo → {v: {seatNo, price, status}, b: button}
    order: [], // seat numbers in map order
    index: new Map(), // seatNo → position in order
    counts: { AVAILABLE: 0, HELD: 0, SOLD: 0 },
    focusNo: 0, // the seat that takes the map's single tab stop
    picked: new Set(), // the seats picked for the next hold
    taken: new Set(), // seats the last hold was refused for, marked until the next hold
    inflight: new Set(), // seats of a hold on its way: their turning HELD is no news
    reservation: null,
    countdown: 0,
    adminToken: "",
    adminTimer: 0,
  };

  // ---- talking to the API ----

  // Problem is an error answer; body is the whole problem+json object, for its extension
  // members (unavailableSeats).
  class Problem extends Error {
    constructor(status, code, detail, body) {
      super(detail);
      this.status = status;
      this.code = code;
      this.body = body || {};
    }
  }

  function idempotencyKey() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // call sends one request and returns the decoded JSON, or throws a Problem built from the
  // server's problem+json answer.
  async function call(method, path, opts = {}) {
    const headers = { Accept: "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    if (opts.idempotent) headers["Idempotency-Key"] = idempotencyKey();
    if (opts.token) headers["Queue-Token"] = S.token || "";
    if (opts.admin) {
      headers.Authorization = "Bearer " + S.adminToken;
    } else if (opts.user) {
      const jwt = el("user-jwt").value.trim();
      if (jwt) headers.Authorization = "Bearer " + jwt;
    }
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new Problem(0, "NETWORK", "The server could not be reached.");
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!res.ok) {
      throw new Problem(res.status, (data && data.code) || "HTTP_" + res.status, (data && data.detail) || res.statusText || "The request failed.", data);
    }
    return data;
  }

  function explain(err) {
    if (err instanceof Problem) return `${err.message} (${err.code})`;
    return String(err && err.message ? err.message : err);
  }

  // ---- messages ----

  let messageTimer = 0;
  function say(text, kind = "info") {
    const m = el("message");
    m.textContent = text;
    m.dataset.kind = kind;
    m.hidden = false;
    clearTimeout(messageTimer);
    messageTimer = setTimeout(() => {
      m.hidden = true;
    }, kind === "error" ? 9000 : 5000);
  }

  // ---- formatting ----

  const fmtPoints = (n) => `${Number(n).toLocaleString()} points`;
  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  function fmtDuration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  const statusWord = (status) => String(status).toLowerCase();
  // seatList names seats in a sentence: "seat 6", "seats 6 and 8", "seats 6, 7 and 8".
  function seatList(nos) {
    const n = [...nos].sort((a, b) => a - b);
    if (n.length === 1) return `seat ${n[0]}`;
    return `seats ${n.slice(0, -1).join(", ")} and ${n[n.length - 1]}`;
  }
  const upper = (text) => text.charAt(0).toUpperCase() + text.slice(1);
  // seatsOf is a reservation's seats (seatNos; seatNo from a server before contract v1.1).
  const seatsOf = (r) => (Array.isArray(r.seatNos) && r.seatNos.length ? r.seatNos : [r.seatNo]);

  function store(key, value) {
    try {
      localStorage.setItem(key, value);
    } catch {
      // Storage can be off (private windows); the page works without it.
    }
  }
  function stored(key) {
    try {
      return localStorage.getItem(key) || "";
    } catch {
      return "";
    }
  }

  // ---- the user ----

  // currentUser returns the user typed in, switching the page over when it changed, or ""
  // (with a message) when the ID is not valid.
  function currentUser() {
    const input = el("user-id");
    const u = input.value.trim();
    if (!ID_RE.test(u)) {
      say("Type your user ID first: 1–64 letters, digits, “_” or “-”.", "error");
      input.focus();
      return "";
    }
    if (u !== S.user) switchUser(u);
    return u;
  }

  function switchUser(u) {
    S.user = u;
    store(STORE_USER, u);
    S.token = null;
    clearTimeout(S.tokenPoll);
    showToken(null);
    setReservation(null);
    el("hold-outcome").textContent = "";
    el("confirmation").hidden = true;
    refreshBalance();
    restoreHold(u);
  }

  // restoreHold shows the user's hold on the current date after a reload.
  async function restoreHold(u) {
    try {
      const { reservations } = await call("GET", `/api/v1/users/${enc(u)}/reservations`, { user: true });
      const r = reservations.find((x) => x.status === "HELD" && x.concertId === S.concert && x.dateId === S.date);
      if (r && S.user === u && !S.reservation) setReservation(r);
    } catch {
      // Not worth a message: the user can hold again.
    }
  }

  // ---- concerts and dates ----

  async function loadConcerts() {
    let concerts;
    try {
      ({ concerts } = await call("GET", "/api/v1/concerts"));
    } catch (e) {
      setStream("closed", "Could not load the concerts: " + explain(e));
      setTimeout(loadConcerts, 5000);
      return;
    }
    const sel = el("concert");
    sel.replaceChildren();
    S.concerts.clear();
    for (const c of concerts) {
      S.concerts.set(c.concertId, c.title);
      sel.append(new Option(c.title, c.concertId));
    }
    if (concerts.length === 0) {
      setStream("closed", "No concerts are on sale yet.");
      setTimeout(loadConcerts, 5000);
      return;
    }
    const want = linked.get("concert") || stored(STORE_CONCERT);
    if (S.concerts.has(want)) sel.value = want;
    await loadDates();
  }

  async function loadDates() {
    S.concert = el("concert").value;
    store(STORE_CONCERT, S.concert);
    const sel = el("date");
    sel.replaceChildren();
    let dates;
    try {
      ({ dates } = await call("GET", `/api/v1/concerts/${enc(S.concert)}/dates`));
    } catch (e) {
      say("Could not load the dates: " + explain(e), "error");
      return;
    }
    for (const d of dates) sel.append(new Option(`${fmtTime(d.startsAt)} (${d.dateId})`, d.dateId));
    const want = linked.get("date") || stored(STORE_DATE);
    if (dates.some((d) => d.dateId === want)) sel.value = want;
    linked.delete("date"); // only for the first load
    chooseDate();
  }

  function chooseDate() {
    S.date = el("date").value;
    store(STORE_DATE, S.date);
    linked.delete("concert");
    history.replaceState(null, "", "?" + new URLSearchParams({ concert: S.concert, date: S.date }));
    S.taken.clear();
    clearPick();
    openStream();
    if (S.user && !S.reservation) restoreHold(S.user);
  }

  // ---- the live seat map ----

  function setStream(state, text) {
    el("seatmap").dataset.stream = state;
    el("stream-status").textContent = text;
  }

  function closeStream() {
    clearTimeout(S.esRetry);
    if (S.es) S.es.close();
    S.es = null;
  }

  function openStream() {
    closeStream();
    if (!S.concert || !S.date) return;
    const es = new EventSource(`/api/v1/concerts/${enc(S.concert)}/dates/${enc(S.date)}/seats/stream`);
    S.es = es;
    setStream("connecting", "Connecting to live updates…");
    es.addEventListener("snapshot", (ev) => {
      if (S.es !== es) return;
      renderSnapshot(JSON.parse(ev.data).seats);
      setStream("open", "Live: seats update as they change");
    });
    // A frame: every seat that changed since the last one, once, with its latest state.
    es.addEventListener("seats", (ev) => {
      if (S.es === es) JSON.parse(ev.data).seats.forEach(applySeat);
    });
    es.onerror = () => {
      if (S.es !== es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream (an unknown date, or overload): try again later.
        setStream("closed", "Live updates stopped; retrying in 5 s…");
        S.esRetry = setTimeout(() => {
          if (S.es === es) openStream();
        }, 5000);
      } else {
        setStream("connecting", "Connection lost; reconnecting…");
      }
    };
  }

  // mine tells whether seat n of the shown date is in the user's live reservation.
  function mine(n) {
    const r = S.reservation;
    return !!r && (r.status === "HELD" || r.status === "CONFIRMED") && r.concertId === S.concert && r.dateId === S.date && seatsOf(r).includes(n);
  }

  function seatLabel(v) {
    let label = `Seat ${v.seatNo}, ${v.price} points, ${statusWord(v.status)}`;
    if (mine(v.seatNo)) label += ", in your reservation";
    else if (S.taken.has(v.seatNo)) label += ", just taken by someone else";
    return label;
  }

  function paintSeat(b, v) {
    b.dataset.status = v.status;
    b.dataset.mine = mine(v.seatNo) ? "true" : "false";
    b.dataset.taken = S.taken.has(v.seatNo) ? "true" : "false";
    b.setAttribute("aria-label", seatLabel(v));
    b.title = `Seat ${v.seatNo} · ${fmtPoints(v.price)} · ${statusWord(v.status)}`;
    b.setAttribute("aria-disabled", v.status === "AVAILABLE" ? "false" : "true");
  }

  function repaintSeats() {
    for (const { v, b } of S.seats.values()) paintSeat(b, v);
  }

  function renderSnapshot(list) {
    const same = list.length === S.order.length && list.every((v, i) => S.order[i] === v.seatNo);
    if (!same) {
      const frag = document.createDocumentFragment();
      S.seats.clear();
      S.index.clear();
      S.order = [];
      list.forEach((v, i) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "seat";
        b.textContent = String(v.seatNo);
        b.dataset.seat = String(v.seatNo);
        b.tabIndex = -1;
        b.setAttribute("aria-pressed", "false");
        frag.append(b);
        S.seats.set(v.seatNo, { v, b });
        S.index.set(v.seatNo, i);
        S.order.push(v.seatNo);
      });
      el("seatmap").replaceChildren(frag);
      if (!S.seats.has(S.focusNo)) S.focusNo = S.order.length ? S.order[0] : 0;
    }
    S.counts = { AVAILABLE: 0, HELD: 0, SOLD: 0 };
    for (const v of list) {
      const s = S.seats.get(v.seatNo);
      s.v = v;
      paintSeat(s.b, v);
      S.counts[v.status] = (S.counts[v.status] || 0) + 1;
    }
    const f = S.seats.get(S.focusNo);
    if (f) f.b.tabIndex = 0;
    // A pick of a seat that is gone or taken meanwhile (the stream reconnected) is dropped.
    for (const n of [...S.picked]) {
      const s = S.seats.get(n);
      if (!s || s.v.status !== "AVAILABLE") S.picked.delete(n);
    }
    markPicked();
    showCounts();
    showPick();
  }

  function applySeat(v) {
    const s = S.seats.get(v.seatNo);
    if (!s) return;
    const was = s.v.status;
    s.v = v;
    paintSeat(s.b, v);
    if (was !== v.status) {
      S.counts[was]--;
      S.counts[v.status] = (S.counts[v.status] || 0) + 1;
      showCounts();
      if (S.picked.has(v.seatNo) && v.status !== "AVAILABLE") {
        // A picked seat someone else took cannot be held: drop it from the pick, and say so
        // unless it is this page's own hold arriving.
        S.picked.delete(v.seatNo);
        s.b.setAttribute("aria-pressed", "false");
        showPick();
        if (!S.inflight.has(v.seatNo) && !mine(v.seatNo)) {
          say(`Seat ${v.seatNo} is now ${statusWord(v.status)}: it was taken off your pick.`);
        }
      }
    }
  }

  function showCounts() {
    const c = S.counts;
    el("seat-counts").textContent = `${c.AVAILABLE} available, ${c.HELD} held, ${c.SOLD} sold`;
  }

  function markPicked() {
    for (const { v, b } of S.seats.values()) b.setAttribute("aria-pressed", S.picked.has(v.seatNo) ? "true" : "false");
  }

  // togglePick adds seat n to the pick or takes it off; the pick is what "Hold" asks for.
  function togglePick(n) {
    const s = S.seats.get(n);
    if (!s) return;
    if (S.picked.has(n)) {
      S.picked.delete(n);
    } else if (S.picked.size >= MAX_PICK) {
      say(`One hold takes at most ${MAX_PICK} seats: take a seat off your pick first.`, "error");
      return;
    } else {
      S.picked.add(n);
    }
    s.b.setAttribute("aria-pressed", S.picked.has(n) ? "true" : "false");
    el("hold-outcome").textContent = "";
    showPick();
  }

  function clearPick() {
    S.picked.clear();
    markPicked();
    showPick();
  }

  // pickedSeats is the pick in seat order.
  const pickedSeats = () => [...S.picked].sort((a, b) => a - b);

  function showPick() {
    const nos = pickedSeats();
    const total = nos.reduce((sum, n) => sum + S.seats.get(n).v.price, 0);
    el("selected-seat").textContent = nos.length === 0
      ? `No seat picked yet: pick up to ${MAX_PICK}.`
      : `${upper(seatList(nos))}: ${fmtPoints(total)}${nos.length > 1 ? " in all" : ""}.`;
    el("hold-seat").textContent = nos.length === 0 ? "Hold seats" : `Hold ${nos.length} seat${nos.length > 1 ? "s" : ""}`;
    updateButtons();
  }

  function focusSeat(n) {
    const old = S.seats.get(S.focusNo);
    const s = S.seats.get(n);
    if (!s) return;
    if (old) old.b.tabIndex = -1;
    S.focusNo = n;
    s.b.tabIndex = 0;
    s.b.focus();
  }

  // columns counts the seats on the map's first row, for the up and down arrows.
  function columns() {
    const kids = el("seatmap").children;
    if (kids.length === 0) return 1;
    const top = kids[0].offsetTop;
    let n = 0;
    while (n < kids.length && kids[n].offsetTop === top) n++;
    return Math.max(1, n);
  }

  function onSeatClick(ev) {
    const b = ev.target.closest(".seat");
    if (!b) return;
    const n = Number(b.dataset.seat);
    focusSeat(n);
    const s = S.seats.get(n);
    if (s.v.status !== "AVAILABLE") {
      say(`Seat ${n} is ${statusWord(s.v.status)}; pick an available seat.`);
      return;
    }
    togglePick(n);
  }

  function onSeatKey(ev) {
    const b = ev.target.closest(".seat");
    if (!b) return;
    const i = S.index.get(Number(b.dataset.seat));
    let j;
    switch (ev.key) {
      case "ArrowRight": j = i + 1; break;
      case "ArrowLeft": j = i - 1; break;
      case "ArrowDown": j = i + columns(); break;
      case "ArrowUp": j = i - columns(); break;
      case "Home": j = 0; break;
      case "End": j = S.order.length - 1; break;
      case "Escape":
        if (S.picked.size) {
          ev.preventDefault();
          clearPick();
        }
        return;
      default: return;
    }
    ev.preventDefault();
    j = Math.min(Math.max(j, 0), S.order.length - 1);
    focusSeat(S.order[j]);
  }

  // ---- the waiting queue ----

  function showToken(t) {
    el("queue-status").textContent = t ? t.status : "Not in the queue";
    el("queue-position").textContent = t ? String(t.position) : "–";
    el("queue-ahead").textContent = t && t.ahead !== undefined ? String(t.ahead) : "–";
    el("queue-expires").textContent = t && t.expiresAt ? fmtTime(t.expiresAt) : "–";
  }

  async function joinQueue() {
    const u = currentUser();
    if (!u) return;
    el("join-queue").disabled = true;
    try {
      const t = await call("POST", "/api/v1/queue/tokens", { body: { userId: u }, idempotent: true, user: true });
      if (S.user !== u) return;
      S.token = t.token;
      showToken(t);
      afterToken(t);
    } catch (e) {
      say("Could not join the queue: " + explain(e), "error");
    } finally {
      el("join-queue").disabled = false;
    }
  }

  function afterToken(t) {
    clearTimeout(S.tokenPoll);
    if (t.status === "WAITING") {
      S.tokenPoll = setTimeout(pollToken, 1000);
    } else if (t.status === "ACTIVE") {
      say("It is your turn: you can hold seats now.");
    } else {
      S.token = null;
    }
  }

  async function pollToken() {
    const token = S.token;
    if (!token) return;
    try {
      const t = await call("GET", "/api/v1/queue/tokens/current", { headers: { "Queue-Token": token } });
      if (S.token !== token) return;
      showToken(t);
      afterToken(t);
    } catch (e) {
      if (S.token !== token) return;
      if (e.status === 401) {
        dropToken("Your queue token is no longer valid; join the queue again.");
      } else {
        S.tokenPoll = setTimeout(pollToken, 3000);
      }
    }
  }

  function dropToken(text) {
    S.token = null;
    clearTimeout(S.tokenPoll);
    el("queue-status").textContent = text;
    el("queue-ahead").textContent = "–";
  }

  // tokenTrouble explains the queue-token errors of a token call; false for other errors.
  function tokenTrouble(e) {
    switch (e.code) {
      case "TOKEN_EXPIRED":
      case "TOKEN_INVALID":
        dropToken("Expired: join the queue again.");
        say("Your queue token has expired; join the queue again.", "error");
        return true;
      case "TOKEN_NOT_ACTIVE":
        say("You are still waiting in the queue; the page tells you when it is your turn.", "error");
        return true;
    }
    return false;
  }

  // ---- holds ----

  function setReservation(r) {
    S.reservation = r;
    clearInterval(S.countdown);
    el("reservation-id").textContent = r ? r.reservationId : "–";
    el("reservation-seats").textContent = r ? seatsOf(r).join(", ") : "–";
    el("reservation-price").textContent = r ? fmtPoints(r.price) : "–";
    el("reservation-status").textContent = r ? r.status : "–";
    repaintSeats();
    if (r && r.status === "HELD") {
      tick();
      S.countdown = setInterval(tick, 1000);
    } else {
      el("countdown").textContent = "–";
    }
    updateButtons();
  }

  function tick() {
    const r = S.reservation;
    if (!r) return;
    const left = Date.parse(r.heldUntil) - Date.now();
    if (left <= 0) {
      clearInterval(S.countdown);
      el("countdown").textContent = "The hold has run out.";
      setTimeout(refreshReservation, 1500);
      return;
    }
    const s = Math.ceil(left / 1000);
    el("countdown").textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} left to pay`;
  }

  async function refreshReservation() {
    const r = S.reservation;
    if (!r) return;
    try {
      const now = await call("GET", `/api/v1/reservations/${enc(r.reservationId)}`, { user: true });
      if (S.reservation === r) setReservation(now);
    } catch (e) {
      say("Could not read the reservation: " + explain(e), "error");
    }
  }

  const holding = () => S.reservation && S.reservation.status === "HELD";

  function updateButtons() {
    el("hold-seat").disabled = S.picked.size === 0 || S.inflight.size > 0 || !!holding();
    el("clear-pick").disabled = S.picked.size === 0;
    el("cancel-hold").disabled = !holding();
    el("pay").disabled = !holding();
  }

  // holdSeat holds every picked seat in one reservation, all or none.
  async function holdSeat() {
    const u = currentUser();
    if (!u) return;
    const nos = pickedSeats();
    if (nos.length === 0) return;
    if (!S.token) {
      say("Join the queue first: holding seats needs your turn in the queue.", "error");
      el("join-queue").focus();
      return;
    }
    const what = seatList(nos);
    S.taken.clear();
    repaintSeats();
    nos.forEach((n) => S.inflight.add(n));
    updateButtons();
    el("hold-outcome").textContent = `Holding ${what}…`;
    try {
      const r = await call("POST", "/api/v1/reservations", {
        body: { userId: u, concertId: S.concert, dateId: S.date, seatNos: nos },
        idempotent: true, user: true, token: true,
      });
      el("confirmation").hidden = true;
      nos.forEach((n) => S.picked.delete(n));
      markPicked();
      setReservation(r);
      showPick();
      el("hold-outcome").textContent = `${upper(seatList(seatsOf(r)))} ${seatsOf(r).length > 1 ? "are" : "is"} held for you as one reservation. Pay before the time runs out.`;
    } catch (e) {
      holdRefused(e, nos);
    } finally {
      S.inflight.clear();
      updateButtons();
    }
  }

  // holdRefused explains a refused hold; nothing of it was held.
  function holdRefused(e, nos) {
    const what = seatList(nos);
    if (e.code === "SEAT_UNAVAILABLE") {
      const gone = Array.isArray(e.body.unavailableSeats) && e.body.unavailableSeats.length ? e.body.unavailableSeats : nos;
      gone.forEach((n) => {
        S.taken.add(n);
        S.picked.delete(n);
      });
      markPicked();
      repaintSeats();
      showPick();
      const rest = S.picked.size ? " The rest of your pick is kept: hold again, or pick other seats." : " Pick other seats.";
      el("hold-outcome").textContent =
        `Nothing was held: ${seatList(gone)} ${gone.length > 1 ? "were" : "was"} just taken by someone else (${e.code}), marked on the map.${rest}`;
    } else if (e.code === "SEAT_LIMIT_REACHED") {
      el("hold-outcome").textContent =
        `Nothing was held: with ${what} you would have more seats of this date than one person may hold or buy (${e.code}). Pick fewer seats.`;
      say("Seat limit reached: pick fewer seats for this date.", "error");
    } else {
      el("hold-outcome").textContent = `${upper(what)} could not be held: ${explain(e)}`;
      tokenTrouble(e);
    }
  }

  async function cancelHold() {
    const r = S.reservation;
    if (!r || !currentUser()) return;
    el("cancel-hold").disabled = true;
    try {
      const now = await call("DELETE", `/api/v1/reservations/${enc(r.reservationId)}`, { user: true, token: true });
      setReservation(now);
      el("hold-outcome").textContent = `The hold on ${seatList(seatsOf(r))} is cancelled.`;
    } catch (e) {
      if (!tokenTrouble(e)) say("Could not cancel: " + explain(e), "error");
      updateButtons();
    }
  }

  // ---- points ----

  async function refreshBalance() {
    const u = S.user;
    if (!u) return;
    try {
      const w = await call("GET", `/api/v1/users/${enc(u)}/points`, { user: true });
      if (S.user === u) el("balance").textContent = fmtPoints(w.balance);
    } catch (e) {
      el("balance").textContent = "–";
      say("Could not read your points: " + explain(e), "error");
    }
  }

  async function charge() {
    const u = currentUser();
    if (!u) return;
    const input = el("charge-amount");
    const amount = Number(input.value);
    if (!Number.isInteger(amount) || amount < 1 || amount > 10000000) {
      say("The amount must be a whole number from 1 to 10,000,000.", "error");
      input.focus();
      return;
    }
    el("charge").disabled = true;
    try {
      const w = await call("POST", `/api/v1/users/${enc(u)}/points/charge`, { body: { amount }, idempotent: true, user: true });
      el("balance").textContent = fmtPoints(w.balance);
      say(`Charged ${fmtPoints(amount)}.`);
    } catch (e) {
      say("Could not charge: " + explain(e), "error");
    } finally {
      el("charge").disabled = false;
    }
  }

  // ---- payment ----

  async function pay() {
    const r = S.reservation;
    const u = currentUser();
    if (!r || !u) return;
    el("pay").disabled = true;
    try {
      const p = await call("POST", "/api/v1/payments", {
        body: { reservationId: r.reservationId, userId: u },
        idempotent: true, user: true, token: true,
      });
      // A completed payment ends the queue token.
      dropToken("Used by your payment; join again to book more seats.");
      let now = r;
      try {
        now = await call("GET", `/api/v1/reservations/${enc(r.reservationId)}`, { user: true });
      } catch {
        now = { ...r, status: "CONFIRMED", paymentId: p.paymentId };
      }
      setReservation(now);
      const title = S.concerts.get(r.concertId) || r.concertId;
      el("confirmation-text").textContent =
        `${upper(seatList(seatsOf(r)))} of ${title} (${r.dateId}) ${seatsOf(r).length > 1 ? "are" : "is"} ${now.status}. Payment ${p.paymentId}: ${p.status}, ${fmtPoints(p.amount)}.`;
      el("confirmation").hidden = false;
      el("hold-outcome").textContent = "";
      say("Payment complete: enjoy the show!");
      refreshBalance();
      setTimeout(loadRanking, 1500);
    } catch (e) {
      if (e.code === "INSUFFICIENT_POINTS") {
        say(`Not enough points: ${seatList(seatsOf(r))} cost${seatsOf(r).length > 1 ? "" : "s"} ${fmtPoints(r.price)}. Charge points, then pay.`, "error");
        el("charge-amount").focus();
      } else if (e.code === "RESERVATION_NOT_PAYABLE") {
        say("This hold can no longer be paid (it ran out or was cancelled).", "error");
        refreshReservation();
      } else if (!tokenTrouble(e)) {
        say("Payment failed: " + explain(e), "error");
      }
      updateButtons();
    }
  }

  // ---- popular today ----

  async function loadRanking() {
    let ranking;
    try {
      ranking = await call("GET", "/api/v1/rankings/daily");
    } catch {
      return; // the panel keeps what it showed
    }
    const list = el("ranking");
    list.replaceChildren();
    for (const e of ranking.entries) {
      const li = document.createElement("li");
      li.textContent = `${e.title} (${e.dateId}): sold out in ${fmtDuration(e.secondsToSellOut)}`;
      list.append(li);
    }
    el("ranking-empty").hidden = ranking.entries.length > 0;
  }

  // ---- operator view ----

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function renderProjections(list) {
    const body = el("projections").tBodies[0];
    body.replaceChildren();
    for (const p of list) {
      const tr = document.createElement("tr");
      tr.append(cell(p.name), cell(String(p.checkpoint), "num"), cell(String(p.head), "num"), cell(String(p.lag), "num"));
      body.append(tr);
    }
  }

  function renderDeadLetters(list) {
    const body = el("dead-letters").tBodies[0];
    body.replaceChildren();
    for (const d of list) {
      const tr = document.createElement("tr");
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "secondary";
      btn.textContent = "Redrive";
      btn.setAttribute("aria-label", `Redrive ${d.eventType} ${d.eventId}`);
      btn.addEventListener("click", () => redrive(d.id, btn));
      const action = document.createElement("td");
      action.append(btn);
      tr.append(cell(`${d.eventType} ${d.eventId}`), cell(String(d.attempts), "num"), cell(d.lastError), cell(fmtTime(d.failedAt)), action);
      body.append(tr);
    }
    el("dead-letters-empty").textContent = list.length ? `${list.length} fact(s) could not be delivered.` : "None: every fact was delivered.";
  }

  async function adminLoad() {
    clearTimeout(S.adminTimer);
    S.adminToken = el("admin-token").value.trim();
    if (!S.adminToken) {
      say("Type the admin token first.", "error");
      el("admin-token").focus();
      return;
    }
    try {
      const [p, d] = await Promise.all([
        call("GET", "/api/v1/admin/projections", { admin: true }),
        call("GET", "/api/v1/admin/dead-letters", { admin: true }),
      ]);
      renderProjections(p.projections);
      renderDeadLetters(d.deadLetters);
      if (el("operator").open) S.adminTimer = setTimeout(adminLoad, 5000);
    } catch (e) {
      say("Operator view: " + explain(e), "error");
    }
  }

  async function redrive(id, btn) {
    btn.disabled = true;
    try {
      await call("POST", `/api/v1/admin/dead-letters/${enc(id)}/redrive`, { admin: true, idempotent: true });
      say(`Dead letter ${id} is being delivered again.`);
      adminLoad();
    } catch (e) {
      btn.disabled = false;
      say("Redrive failed: " + explain(e), "error");
    }
  }

  function adminForget() {
    clearTimeout(S.adminTimer);
    S.adminToken = "";
    el("admin-token").value = "";
    el("projections").tBodies[0].replaceChildren();
    el("dead-letters").tBodies[0].replaceChildren();
    el("dead-letters-empty").textContent = "–";
  }

  // ---- start ----

  function init() {
    el("user-id").value = stored(STORE_USER);
    el("user-id").addEventListener("change", () => {
      const u = el("user-id").value.trim();
      if (ID_RE.test(u) && u !== S.user) switchUser(u);
    });
    el("concert").addEventListener("change", loadDates);
    el("date").addEventListener("change", chooseDate);
    el("seatmap").addEventListener("click", onSeatClick);
    el("seatmap").addEventListener("keydown", onSeatKey);
    el("join-queue").addEventListener("click", joinQueue);
    el("hold-seat").addEventListener("click", holdSeat);
    el("clear-pick").addEventListener("click", clearPick);
    el("cancel-hold").addEventListener("click", cancelHold);
    el("charge").addEventListener("click", charge);
    el("pay").addEventListener("click", pay);
    el("admin-load").addEventListener("click", adminLoad);
    el("admin-forget").addEventListener("click", adminForget);
    el("operator").addEventListener("toggle", () => {
      if (!el("operator").open) clearTimeout(S.adminTimer);
      else if (S.adminToken) adminLoad();
    });
    const u = el("user-id").value.trim();
    if (ID_RE.test(u)) switchUser(u);
    loadConcerts();
    loadRanking();
    setInterval(loadRanking, 30000);
  }

  init();
})();
