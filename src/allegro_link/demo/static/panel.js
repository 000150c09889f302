// The demo "Konta Allegro" panel: a plain client of allegro-link's public API.
// Every string that comes from the API is put on the page with textContent, never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "allegroLinkDemo.token";
  const OWNER_KEY = "allegroLinkDemo.ownerId";
  const DEFAULT_OWNER = "demo-owner";
  const RETURN_PARAMS = ["allegro_link", "link_session", "error", "error_description"];
  const MAX_PAGES = 50;
  const DAY_MS = 24 * 60 * 60 * 1000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const WAYBILL_WARNING =
    "Uwaga! Jeśli odłączysz konto w Allegro, to nie będziemy mogli zaktualizować listów przewozowych " +
    "zaimportowanych zleceń.";

  const REASONS = {
    legacy_account: "konto dodane przed wprowadzeniem nowego systemu logowania",
    refresh_token_expired: "konto nie było używane przez 3 miesiące",
    grant_revoked: "dostęp cofnięty w Allegro",
    refresh_rejected: "Allegro odrzuciło dane logowania",
  };

  // What the user is told after Allegro sends the browser back with allegro_link=error.
  const OUTCOMES = {
    access_denied: ["info", "Logowanie w Allegro zostało anulowane. Konto nie zostało połączone."],
    state_expired: [
      "error",
      "Sesja logowania wygasła, zanim wróciłeś z Allegro. Kliknij przycisk ponownie, aby spróbować jeszcze raz.",
    ],
    allegro_unavailable: [
      "error",
      "Allegro jest chwilowo niedostępne, konto nie zostało połączone. Spróbuj ponownie za kilka minut.",
    ],
    exchange_rejected: [
      "error",
      "Allegro odrzuciło logowanie, konto nie zostało połączone. Spróbuj ponownie.",
    ],
    allegro_error: [
      "error",
      "Allegro zgłosiło błąd podczas logowania, konto nie zostało połączone. Spróbuj ponownie.",
    ],
  };

  const COMPLETION_GONE =
    "Nie udało się dokończyć łączenia konta: sesja logowania wygasła albo została już użyta. " +
    "Spróbuj ponownie.";

  const devMode = document.body.dataset.devMode === "true";
  const byId = (id) => document.getElementById(id);
  let pendingReturn = null;

  class ApiError extends Error {
    constructor(status, problem) {
      super(`HTTP ${status}`);
      this.status = status;
      this.problem = problem && typeof problem === "object" ? problem : {};
      this.code = typeof this.problem.code === "string" ? this.problem.code : null;
    }
  }

  class NeedToken extends Error {}

  // -- small DOM helpers -------------------------------------------------------------------------

  function el(tag, attributes = {}, text = null) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    if (text !== null) node.textContent = text;
    return node;
  }

  // A key drawn inline: an emoji needs a font with it, which many machines lack.
  function keyIcon() {
    const svg = document.createElementNS(SVG_NS, "svg");
    for (const [name, value] of Object.entries({
      class: "icon-key",
      viewBox: "0 0 24 24",
      width: "18",
      height: "18",
      "aria-hidden": "true",
      focusable: "false",
    })) {
      svg.setAttribute(name, value);
    }
    const shapes = [
      ["circle", { cx: "7.5", cy: "15.5", r: "4.5" }],
      ["path", { d: "M10.7 12.3 20 3M16.5 6.5l3 3M14 9l2.5 2.5" }],
    ];
    for (const [tag, attributes] of shapes) {
      const shape = document.createElementNS(SVG_NS, tag);
      for (const [name, value] of Object.entries(attributes)) shape.setAttribute(name, value);
      svg.append(shape);
    }
    return svg;
  }

  function showMessage(kind, text) {
    const box = byId("message");
    box.className = `message ${kind}`;
    box.textContent = text;
    box.hidden = false;
  }

  function clearMessage() {
    const box = byId("message");
    box.hidden = true;
    box.textContent = "";
  }

  function setBusy(busy) {
    document.body.dataset.state = busy ? "busy" : "ready";
    for (const button of document.querySelectorAll("button")) button.disabled = busy;
  }

  // -- the owner's JWT ---------------------------------------------------------------------------

  async function mintToken(ownerId) {
    const response = await fetch("/demo/owner-token", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ owner_id: ownerId }),
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, body);
    sessionStorage.setItem(TOKEN_KEY, body.token);
    sessionStorage.setItem(OWNER_KEY, body.owner_id);
    return body.token;
  }

  async function currentToken() {
    const stored = sessionStorage.getItem(TOKEN_KEY);
    if (stored) return stored;
    if (devMode) return mintToken(sessionStorage.getItem(OWNER_KEY) || DEFAULT_OWNER);
    return null;
  }

  function ownerOf(token) {
    if (devMode) return sessionStorage.getItem(OWNER_KEY) || "";
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(payload));
      return typeof claims.sub === "string" ? claims.sub : "";
    } catch {
      return "";
    }
  }

  function forgetToken() {
    sessionStorage.removeItem(TOKEN_KEY);
  }

  // -- the API -----------------------------------------------------------------------------------

  async function api(method, path, body, retried = false) {
    const token = await currentToken();
    if (!token) throw new NeedToken("Wklej token JWT właściciela, aby zobaczyć jego konta.");
    const init = { method, headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, null);
    }
    if (response.status === 401) {
      forgetToken();
      if (devMode && !retried) return api(method, path, body, true);
      throw new NeedToken("Token wygasł lub jest nieprawidłowy. Wklej nowy token JWT właściciela.");
    }
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  async function loadAccounts() {
    const items = [];
    let count = 0;
    let cursor = null;
    for (let page = 0; page < MAX_PAGES; page += 1) {
      const query = new URLSearchParams({ limit: "200" });
      if (cursor) query.set("cursor", cursor);
      const body = await api("GET", `/accounts?${query}`);
      items.push(...body.items);
      // The banner counts the accounts that need a re-login now and those that will soon.
      count = body.relogin_required_count + body.relogin_soon_count;
      cursor = body.next_cursor;
      if (!cursor) break;
    }
    return { items, count };
  }

  // -- rendering ---------------------------------------------------------------------------------

  function loginOf(account) {
    return account.login || "(bez loginu)";
  }

  // Whole days to the deadline, rounded up, as the API's `account.relogin_soon` event counts them.
  function daysLeft(account) {
    const deadline = Date.parse(account.relogin_deadline);
    return Number.isNaN(deadline) ? 0 : Math.max(0, Math.ceil((deadline - Date.now()) / DAY_MS));
  }

  function daysText(days) {
    return days === 1 ? "1 dzień" : `${days} dni`;
  }

  function rowClass(account) {
    if (account.status === "relogin_required") return "relogin";
    return account.relogin_soon ? "relogin-soon" : "active";
  }

  function statusCell(account) {
    const cell = el("td", { class: "status" });
    if (account.status !== "relogin_required" && account.relogin_soon) {
      cell.append(el("span", { class: "warn-mark", role: "img", "aria-label": "Uwaga" }, "⚠"));
      const days = daysLeft(account);
      // Past the deadline while still active (Allegro has not refused a call yet): no "za 0 dni".
      const when = days > 0 ? ` za ${daysText(days)}` : "";
      cell.append(el("span", { class: "status-warn" }, `Wymaga ponownego logowania${when}`));
      return cell;
    }
    if (account.status !== "relogin_required") {
      cell.append(el("span", { class: "status-ok" }, "Aktywne"));
      return cell;
    }
    cell.append(el("span", { class: "warn-mark", role: "img", "aria-label": "Uwaga" }, "⚠"));
    cell.append(el("span", { class: "status-warn" }, "Wymaga ponownego logowania"));
    const reason = REASONS[account.relogin_reason];
    if (reason) cell.append(el("span", { class: "reason" }, reason));
    return cell;
  }

  // -- history ("Historia"): GET /accounts/{id}/events, newest first ------------------------------

  const EVENT_TEXTS = {
    "account.linked": () => "Konto połączone",
    "account.relinked": () => "Zalogowano ponownie",
    "account.relogin_required": (data) => `Wymaga ponownego logowania (${REASONS[data.reason] || data.reason})`,
    "account.relogin_soon": (data) => `Wkrótce wymagane ponowne logowanie (zostało dni: ${data.days_left})`,
    "account.relink_mismatch": (data) => `Zalogowano jako inne konto (${data.actual_login}) – bez zmian`,
    "account.imported": () => "Konto przeniesione ze starego systemu",
    "account.deleted": () => "Konto odłączone",
  };

  async function toggleHistory(account, row) {
    const open = row.nextElementSibling;
    if (open && open.classList.contains("history")) {
      open.remove();
      return;
    }
    const body = await api("GET", `/accounts/${encodeURIComponent(account.id)}/events?limit=20`);
    const list = el("ul", { class: "history-list" });
    for (const event of body.items) {
      const describe = EVENT_TEXTS[event.type] || (() => event.type);
      const when = new Date(event.occurred_at).toLocaleString("pl-PL");
      list.append(el("li", {}, `${when}: ${describe(event.data)}`));
    }
    if (!body.items.length) list.append(el("li", {}, "Brak zdarzeń."));
    const cell = el("td", { colspan: "4" });
    cell.append(el("strong", {}, `Historia konta ${loginOf(account)}`), list);
    const historyRow = el("tr", { class: "history" });
    historyRow.append(cell);
    row.after(historyRow);
  }

  function actionsCell(account) {
    const login = loginOf(account);
    const cell = el("td", { class: "actions" });
    const key = el("button", {
      type: "button",
      class: "key",
      "aria-label": `Zaloguj ponownie konto ${login}`,
      title: "Zaloguj ponownie",
    });
    key.append(keyIcon());
    key.addEventListener("click", () => run(() => startLink(account)));
    const remove = el("button", { type: "button", class: "disconnect", "aria-label": `Odłącz konto ${login}` }, "Odłącz");
    remove.addEventListener("click", () => run(() => disconnect(account)));
    const history = el("button", { type: "button", class: "history", "aria-label": `Historia konta ${login}` }, "Historia");
    history.addEventListener("click", () => run(() => toggleHistory(account, cell.parentElement)));
    cell.append(key, remove, history);
    return cell;
  }

  function render({ items, count }) {
    const rows = items.map((account, index) => {
      const row = el("tr", { class: rowClass(account) });
      row.dataset.accountId = account.id;
      row.append(el("td", { class: "lp" }, `${index + 1}.`), el("td", { class: "login" }, loginOf(account)));
      row.append(statusCell(account), actionsCell(account));
      return row;
    });
    byId("accounts").tBodies[0].replaceChildren(...rows);
    byId("accounts").hidden = items.length === 0;
    byId("no-accounts").hidden = items.length > 0;
    byId("relogin-banner").hidden = !(count > 0);
    byId("relogin-banner").dataset.count = String(count);
  }

  async function refresh() {
    render(await loadAccounts());
  }

  // -- actions -----------------------------------------------------------------------------------

  function returnTo() {
    return `${window.location.origin}${window.location.pathname}`;
  }

  async function startLink(account) {
    const path = account ? `/accounts/${encodeURIComponent(account.id)}/authorize` : "/accounts/authorize";
    const started = await api("POST", path, { return_to: returnTo() });
    const target = new URL(started.authorization_url);
    if (target.protocol !== "https:" && target.protocol !== "http:") throw new Error("bad authorization URL");
    window.location.assign(target.href);
    return "navigating";
  }

  async function disconnect(account) {
    const login = loginOf(account);
    if (!window.confirm(`Czy na pewno odłączyć konto ${login}?\n\n${WAYBILL_WARNING}`)) return;
    try {
      await api("DELETE", `/accounts/${encodeURIComponent(account.id)}`);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
    }
    showMessage("success", `Konto ${login} zostało odłączone.`);
    await refresh();
  }

  function mismatchText(problem) {
    const expected = problem.expected_login || "(bez loginu)";
    const actual = problem.actual_login || "(bez loginu)";
    return (
      `Zalogowałeś się w Allegro jako ${actual}, a to konto to ${expected}. ` +
      `Konto ${expected} pozostało bez zmian. Aby je zalogować, kliknij ponownie przycisk z kluczem, ` +
      `na stronie Allegro użyj przycisku „Zmień konto” i zaloguj się jako ${expected}.`
    );
  }

  async function completeLink(linkSession) {
    try {
      const done = await api("POST", "/oauth/complete", { link_session: linkSession });
      const login = loginOf(done.account);
      if (done.result === "relinked") showMessage("success", `Konto ${login} zostało ponownie zalogowane.`);
      else showMessage("success", `Konto ${login} zostało połączone.`);
    } catch (error) {
      if (error instanceof ApiError && error.code === "account_mismatch") {
        showMessage("error", mismatchText(error.problem));
      } else if (error instanceof ApiError && error.status === 404) {
        showMessage("error", COMPLETION_GONE);
      } else {
        throw error;
      }
    }
  }

  async function handleReturn(returned) {
    if (returned.outcome === "complete" && returned.linkSession) {
      await completeLink(returned.linkSession);
      return;
    }
    const [kind, text] = OUTCOMES[returned.error] || OUTCOMES.allegro_error;
    showMessage(kind, text);
  }

  // Allegro sends the browser back with ?allegro_link=…; take those parameters out of the address
  // bar at once, so that a reload, a bookmark or a shared link never carries them.
  function takeReturnParams() {
    const url = new URL(window.location.href);
    const outcome = url.searchParams.get("allegro_link");
    if (outcome === null) return null;
    const returned = { outcome, linkSession: url.searchParams.get("link_session"), error: url.searchParams.get("error") };
    for (const name of RETURN_PARAMS) url.searchParams.delete(name);
    window.history.replaceState(null, "", `${url.pathname}${url.search}${url.hash}`);
    return returned;
  }

  function describeFailure(error) {
    if (!(error instanceof ApiError)) return "Wystąpił nieoczekiwany błąd. Odśwież stronę i spróbuj ponownie.";
    if (error.status === 0) return "Brak połączenia z usługą allegro-link. Spróbuj ponownie za chwilę.";
    if (error.code === "invalid_return_to") {
      return (
        "Adres tego panelu nie jest na liście dozwolonych adresów powrotu " +
        "(ALLEGRO_LINK_RETURN_URL_ALLOWLIST), więc nie można rozpocząć logowania w Allegro."
      );
    }
    if (error.status === 404) return "Nie znaleziono tego konta. Lista kont została odświeżona.";
    if (error.status >= 500) return "Usługa allegro-link jest chwilowo niedostępna. Spróbuj ponownie za chwilę.";
    return `Nie udało się wykonać operacji (błąd ${error.status}${error.code ? `, ${error.code}` : ""}).`;
  }

  // -- the owner section -------------------------------------------------------------------------

  function showOwner(token) {
    const owner = token ? ownerOf(token) : "";
    byId("owner-name").textContent = owner;
    byId("owner-status").hidden = devMode || !token;
    byId("jwt-form").hidden = devMode || Boolean(token);
    byId("dev-owner-form").hidden = !devMode;
    byId("owner-id").value = devMode ? owner || DEFAULT_OWNER : "";
    byId("panel").hidden = !token;
  }

  async function openPanel() {
    const token = await currentToken();
    showOwner(token);
    if (!token) throw new NeedToken(pendingReturn ? "Wklej token JWT właściciela, aby dokończyć łączenie konta." : "");
    if (pendingReturn) {
      const returned = pendingReturn;
      pendingReturn = null;
      await handleReturn(returned);
    }
    await refresh();
  }

  // Every action runs through here: one at a time, failures shown as a message, never thrown away.
  async function run(task) {
    setBusy(true);
    let outcome;
    try {
      outcome = await task();
    } catch (error) {
      if (error instanceof NeedToken) {
        forgetToken();
        showOwner(null);
        if (error.message) showMessage("error", error.message);
        if (!devMode) byId("owner-jwt").focus();
      } else {
        showMessage("error", describeFailure(error));
        if (error instanceof ApiError && error.status === 404) await refresh().catch(() => {});
      }
    } finally {
      if (outcome !== "navigating") setBusy(false);
    }
  }

  function wireForms() {
    byId("dev-owner-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const ownerId = byId("owner-id").value.trim();
      if (!ownerId) return;
      run(async () => {
        clearMessage();
        forgetToken();
        await mintToken(ownerId);
        await openPanel();
      });
    });
    byId("jwt-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = byId("owner-jwt").value.trim();
      if (!token) return;
      byId("owner-jwt").value = "";
      run(async () => {
        clearMessage();
        sessionStorage.setItem(TOKEN_KEY, token);
        await openPanel();
      });
    });
    byId("forget-token").addEventListener("click", () => {
      forgetToken();
      clearMessage();
      showOwner(null);
      byId("owner-jwt").focus();
    });
    byId("connect").addEventListener("click", () => run(() => startLink(null)));
  }

  wireForms();
  pendingReturn = takeReturnParams();
  run(openPanel);
})();
