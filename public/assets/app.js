// The start page: sign up / sign in, my notes (create, edit, delete, publish) and the public feed.
// User content is only ever set with textContent: notes are attacker-controlled text.
//
// Imports name modules by their absolute asset path, which the build rewrites (see api.js).
import { ApiError, api, el, idPath, ifVersion, member, noContent, publicNoteUrl, showHealth, timeElement } from "/assets/api.js";

const PAGE_SIZE = 20;
const EXCERPT_CHARS = 280;
// The API's limits (docs/api.md), in characters (code points). Not `maxlength`, which counts
// UTF-16 units (an emoji is two) and cuts pasted text off without a word.
const TITLE_MAX_CHARS = 200;
const BODY_MAX_CHARS = 20_000;

const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  editingId: null,
  // The version (`updated_at`) of the note the editor opened, or last showed after a conflict:
  // a save applies only on top of it.
  editingVersion: null,
  // What the editor held when the session ended under it or another tab changed the account
  // (see `keepDraft`): given back if its account signs in again on this page.
  draft: null,
  my: { notes: new Map(), cursor: null, generation: 0 },
  feed: { notes: new Map(), cursor: null, generation: 0 },
};

// ---------------------------------------------------------------------------------------------
// Status line (the page's one aria-live region)

let statusTimer = 0;

function say(message, kind = "info") {
  const status = $("status");
  clearTimeout(statusTimer);
  status.dataset.kind = kind;
  status.textContent = message;
  if (kind === "info") {
    statusTimer = setTimeout(() => {
      if (status.textContent === message) status.textContent = "";
    }, 8000);
  }
}

const sayError = (error) => say(error instanceof ApiError ? error.message : `Something went wrong: ${error}`, "error");

/**
 * Controls disabled by `busy` → how many of its runs hold them, and whether they were disabled
 * before the first. Runs can overlap on one control (a refresh while Load more is under way):
 * each taking back the state it found would leave the control disabled when the one that found
 * it disabled ends last.
 */
const heldControls = new Map();

function holdControl(control) {
  const held = heldControls.get(control) ?? { runs: 0, wasDisabled: control.disabled };
  held.runs += 1;
  heldControls.set(control, held);
  control.disabled = true;
}

function releaseControl(control) {
  const held = heldControls.get(control);
  held.runs -= 1;
  if (held.runs > 0) return;
  heldControls.delete(control);
  control.disabled = held.wasDisabled;
}

/**
 * Runs `action` with `button` (and the form's fields, if any) disabled; reports errors. Focus
 * that the disabling took from one of them (the button or field Enter was pressed in) is given
 * back after, so that an error does not leave a keyboard or screen reader user at the top of
 * the page.
 */
async function busy(control, action) {
  const controls = control instanceof HTMLFormElement ? [...control.elements] : [control];
  const focused = controls.find((c) => c === document.activeElement);
  controls.forEach(holdControl);
  try {
    return await action();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && error.code === "unauthenticated" && state.user) {
      endSession();
    } else {
      sayError(error);
    }
    return undefined;
  } finally {
    controls.forEach(releaseControl);
    const lost = !document.activeElement || document.activeElement === document.body;
    if (focused?.isConnected && lost) focused.focus({ preventScroll: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Tabs: #notes (default) and #feed

function route() {
  const tab = location.hash === "#feed" ? "feed" : "notes";
  for (const link of document.querySelectorAll("[data-tab]")) {
    if (link.dataset.tab === tab) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  $("view-notes").hidden = tab !== "notes";
  $("view-feed").hidden = tab !== "feed";
  if (tab === "feed") loadFeed(true);
}

// ---------------------------------------------------------------------------------------------
// Session

/** Shows the page for `user` (null: signed out). Answers whether an unsaved draft came back. */
function setUser(user) {
  state.user = user;
  $("loading").hidden = true;
  $("session-failed").hidden = true;
  $("account").hidden = !user;
  $("signed-in-as").textContent = user ? user.email : "";
  $("auth").hidden = Boolean(user);
  $("notes-panel").hidden = !user;
  for (const id of ["signin-password", "signup-password"]) $(id).value = "";
  stopEditing();
  resetList(state.my, $("my-notes-list"), $("my-notes-more"), $("my-notes-empty"));
  if (user) loadMyNotes(true);
  const draft = state.draft;
  // Only the account it was typed in gets it: another one may be another person.
  if (!user || !draft || draft.userId !== user.id) return false;
  state.draft = null;
  if (draft.editingId) {
    startEditing({ id: draft.editingId, updated_at: draft.editingVersion, title: draft.title, body: draft.body });
  } else {
    $("note-title").value = draft.title;
    $("note-body").value = draft.body;
    $("note-publish").checked = draft.published;
    guardUnsavedText();
  }
  return true;
}

/** Keeps what the editor holds for the signed-in account, before the page stops showing it. */
function keepDraft() {
  const { user } = state;
  const title = $("note-title").value;
  const body = $("note-body").value;
  if (user && (title || body)) {
    state.draft = {
      userId: user.id,
      title,
      body,
      published: $("note-publish").checked,
      editingId: state.editingId,
      editingVersion: state.editingVersion,
    };
  }
}

/**
 * The server says the session is over (it expired, or was ended elsewhere) while the page was
 * in use: back to the sign-in form, keeping what the editor held so that signing in again does
 * not lose it, and with the email already filled in.
 */
function endSession() {
  const { user } = state;
  keepDraft();
  setUser(null);
  tellOtherTabs(null);
  say(
    state.draft
      ? "Your session has ended. Sign in again to go on: your unsaved note will be back in the editor."
      : "Your session has ended. Please sign in again.",
    "error",
  );
  $("signin-email").value = user?.email ?? "";
  $(user ? "signin-password" : "signin-email").focus();
}

const signedInMessage = (text, restored) =>
  restored ? `${text} Your unsaved note is back in the editor: save it when you are ready.` : text;

// Every tab of this browser sends the same session cookie. When one signs in, out, or in as
// someone else, the others would go on showing the account they loaded while their requests
// act for the new one — a note written there would land in an account the page does not show.
// So each tab tells the others, which follow.
const otherTabs = typeof BroadcastChannel === "function" ? new BroadcastChannel("edgestack-session") : null;

/** Tells this browser's other pages that the session is now `user`'s (null: none). */
function tellOtherTabs(user) {
  otherTabs?.postMessage({ user: user ? { id: user.id, email: user.email, created_at: user.created_at } : null });
}

function followOtherTab(event) {
  const user = event.data?.user ?? null;
  if ((user?.id ?? null) === (state.user?.id ?? null)) return;
  const previous = state.user;
  keepDraft();
  const restored = setUser(user);
  if (user) {
    say(signedInMessage(`Signed in as ${user.email} in another tab: this page now shows that account.`, restored));
    return;
  }
  const kept = state.draft?.userId === previous?.id;
  say(
    kept
      ? "Signed out in another tab. Sign in again to go on: your unsaved note will be back in the editor."
      : "Signed out in another tab.",
    kept ? "error" : "info",
  );
  $("signin-email").value = previous?.email ?? "";
}

/** Asks the server whose session this is. Not told (no answer, or an error): offers to ask again. */
async function checkSession() {
  try {
    setUser(member(await api("GET", "/api/me"), "user"));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      setUser(null);
      return;
    }
    // Not "signed out": the sign-in form would tell a signed-in user to sign in again.
    $("loading").hidden = true;
    $("session-failed").hidden = false;
    sayError(error);
  }
}

/**
 * A page the browser's back/forward cache restores shows what it showed when it was left, and
 * the session may have ended or changed since (it expired, or was ended or replaced elsewhere,
 * where this page could not hear of it). So the server is asked again, as a fresh load would,
 * with the account's notes out of view until it answers; the editor keeps its text when the
 * account is the same.
 */
async function recheckRestoredPage(event) {
  if (!event.persisted) return;
  const shown = state.user;
  if (!shown) return checkSession();
  $("notes-panel").hidden = true;
  $("loading").hidden = false;
  let user;
  try {
    user = member(await api("GET", "/api/me"), "user");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      $("loading").hidden = true;
      $("session-failed").hidden = false;
      sayError(error);
      return;
    }
    user = null;
  }
  if (user?.id === shown.id) {
    $("loading").hidden = true;
    $("notes-panel").hidden = false;
    loadMyNotes(true);
    return;
  }
  if (!user) return endSession();
  keepDraft();
  say(signedInMessage(`Signed in as ${user.email} since this page was left: it now shows that account.`, setUser(user)));
}

function credentials(form) {
  return { email: form.elements.email.value.trim(), password: form.elements.password.value };
}

async function signIn(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const user = await busy(form, async () => member(await api("POST", "/api/sessions", credentials(form)), "user"));
  if (user) {
    const restored = setUser(user);
    tellOtherTabs(user);
    say(signedInMessage(`Signed in as ${user.email}.`, restored));
    $("note-title").focus();
  } else {
    form.elements.password.focus();
  }
}

async function signUp(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const user = await busy(form, async () => member(await api("POST", "/api/accounts", credentials(form)), "user"));
  if (user) {
    const restored = setUser(user);
    tellOtherTabs(user);
    say(signedInMessage(`Welcome! Your account ${user.email} is ready.`, restored));
    $("note-title").focus();
  }
}

async function signOut(event) {
  if (editorHasUnsavedText() && !window.confirm("The editor holds text you have not saved. Sign out and discard it?")) return;
  await busy(event.currentTarget, async () => {
    try {
      noContent(await api("DELETE", "/api/sessions/current"));
    } catch (error) {
      // Already signed out on the server: the page just catches up.
      if (!(error instanceof ApiError && error.status === 401)) throw error;
    }
    setUser(null);
    tellOtherTabs(null);
    say("Signed out.");
    $("signin-email").focus();
  });
}

// ---------------------------------------------------------------------------------------------
// Lists (my notes and the feed share the paging logic)

function resetList(list, ul, more, empty) {
  list.generation += 1;
  list.notes.clear();
  list.cursor = null;
  ul.replaceChildren();
  more.hidden = true;
  empty.hidden = true;
}

async function loadPage(list, path, ul, more, empty, render, reset) {
  if (reset) resetList(list, ul, more, empty);
  const generation = list.generation;
  const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (list.cursor) query.set("cursor", list.cursor);
  ul.setAttribute("aria-busy", "true");
  let restart = false;
  const data = await busy(more, async () => {
    try {
      const page = await api("GET", `${path}?${query}`);
      member(page, "notes", Array.isArray);
      return page;
    } catch (error) {
      // A cursor another version of the API gave out (during a gradual deployment, or after a
      // rollback) is refused: start the list over instead of stopping at an error. Caught here,
      // inside `busy`, which reports (and swallows) every error that leaves it.
      if (!(error instanceof ApiError && error.code === "invalid_cursor" && query.has("cursor"))) throw error;
      restart = true;
      return null;
    }
  });
  if (generation !== list.generation) return;
  ul.removeAttribute("aria-busy");
  if (restart) {
    say("The list was loaded again from the start.");
    await loadPage(list, path, ul, more, empty, render, true);
    return;
  }
  if (data === undefined) {
    // Not loaded (`busy` has said why): its button loads the same page again.
    more.textContent = "Try again";
    more.hidden = false;
    return;
  }
  if (!data) return;
  for (const note of data.notes) {
    if (list.notes.has(note.id)) continue;
    list.notes.set(note.id, note);
    ul.append(render(note));
  }
  list.cursor = data.next_cursor ?? null;
  more.textContent = "Load more";
  more.hidden = !list.cursor;
  empty.hidden = list.notes.size > 0;
}

const loadMyNotes = (reset) =>
  loadPage(state.my, "/api/notes", $("my-notes-list"), $("my-notes-more"), $("my-notes-empty"), renderMyNote, reset);

const loadFeed = (reset) =>
  loadPage(state.feed, "/api/public/notes", $("feed-list"), $("feed-more"), $("feed-empty"), renderFeedNote, reset);

function excerpt(body) {
  const text = String(body ?? "");
  return text.length > EXCERPT_CHARS ? `${text.slice(0, EXCERPT_CHARS).trimEnd()}…` : text;
}

function renderMyNote(note) {
  const titleId = `my-note-${note.id}-title`;
  const li = el("li", "note");
  li.dataset.testid = "my-note";
  li.dataset.noteId = note.id;

  const head = el("div", "note-head");
  const title = el("h3", "note-title", note.title);
  title.id = titleId;
  title.dataset.testid = "note-title";
  const badge = el("span", "badge", note.published ? "Published" : "Private");
  badge.dataset.testid = "note-state";
  badge.dataset.state = note.published ? "published" : "private";
  head.append(title, badge);

  const meta = el("p", "meta");
  if (note.published) {
    const link = el("a", "", "Public page");
    link.href = publicNoteUrl(note.id);
    link.dataset.testid = "note-public-link";
    if (note.published_at != null) meta.append("Published ", timeElement(note.published_at), " · ");
    meta.append(link);
  } else {
    meta.append("Updated ", timeElement(note.updated_at ?? note.created_at));
  }

  const actions = el("div", "actions");
  const button = (action, label, className = "secondary") => {
    const b = el("button", className, label);
    b.type = "button";
    b.dataset.action = action;
    b.setAttribute("aria-describedby", titleId);
    return b;
  };
  actions.append(
    button("edit", "Edit"),
    note.published ? button("unpublish", "Unpublish") : button("publish", "Publish"),
    button("delete", "Delete", "danger"),
  );

  li.append(head, meta);
  if (note.body) li.append(el("p", "excerpt", excerpt(note.body)));
  li.append(actions);
  return li;
}

function renderFeedNote(note) {
  const li = el("li", "note");
  li.dataset.testid = "feed-note";
  li.dataset.noteId = note.id;
  const title = el("h3", "note-title");
  const link = el("a", "", note.title);
  link.href = publicNoteUrl(note.id);
  link.dataset.testid = "feed-note-link";
  title.append(link);
  const meta = el("p", "meta");
  meta.append("Published ", timeElement(note.published_at));
  li.append(title, meta);
  if (note.body) li.append(el("p", "excerpt", excerpt(note.body)));
  return li;
}

/** Replaces (or, with `prepend`, adds) a note in my list after the server answered it. */
function showMyNote(note, { prepend = false } = {}) {
  const ul = $("my-notes-list");
  const existing = ul.querySelector(`[data-note-id="${CSS.escape(note.id)}"]`);
  state.my.notes.set(note.id, note);
  const item = renderMyNote(note);
  if (existing) existing.replaceWith(item);
  else if (prepend) ul.prepend(item);
  else ul.append(item);
  $("my-notes-empty").hidden = true;
  guardUnsavedText();
  return item;
}

function forgetMyNote(id) {
  state.my.notes.delete(id);
  const item = $("my-notes-list").querySelector(`[data-note-id="${CSS.escape(id)}"]`);
  // Focus inside the item (its Delete button) would fall to the top of the page with it.
  const hadFocus = item?.contains(document.activeElement);
  const neighbour = item?.nextElementSibling ?? item?.previousElementSibling;
  item?.remove();
  $("my-notes-empty").hidden = state.my.notes.size > 0;
  if (state.editingId === id) stopEditing();
  if (hadFocus || document.activeElement === document.body) {
    (neighbour?.querySelector("button") ?? $("note-title")).focus({ preventScroll: Boolean(neighbour) });
  }
}

// ---------------------------------------------------------------------------------------------
// Editor

/** `beforeunload`: leaving the page (a link, a reload, closing the tab) asks first. */
function askBeforeLeaving(event) {
  event.preventDefault();
  // Browsers before the standard's preventDefault() (Chrome and Edge before 119) read this.
  event.returnValue = true;
}

let guardingUnsavedText = false;

/**
 * Listens for `beforeunload` while the editor holds unsaved text, and only then: the listener
 * keeps some browsers (Firefox) from keeping the page in their back/forward cache. Called
 * wherever the editor or the note it opened changes.
 */
function guardUnsavedText() {
  const unsaved = Boolean(state.user) && editorHasUnsavedText();
  if (unsaved === guardingUnsavedText) return;
  guardingUnsavedText = unsaved;
  if (unsaved) window.addEventListener("beforeunload", askBeforeLeaving);
  else window.removeEventListener("beforeunload", askBeforeLeaving);
}

/** Whether the editor holds text that would be lost: changed since opened, or a new note's. */
function editorHasUnsavedText() {
  const title = $("note-title").value;
  const body = $("note-body").value;
  if (!state.editingId) return Boolean(title.trim() || body.trim());
  const opened = state.my.notes.get(state.editingId);
  // A textarea gives its text back with line breaks as LF, whatever the note was saved with.
  return !opened || title !== opened.title || body !== String(opened.body ?? "").replace(/\r\n?/g, "\n");
}

function startEditing(note) {
  state.editingId = note.id;
  state.editingVersion = note.updated_at;
  $("note-form-heading").textContent = "Edit note";
  $("note-title").value = note.title;
  $("note-body").value = note.body ?? "";
  $("note-publish-row").hidden = true;
  $("note-cancel").hidden = false;
  $("note-save").textContent = "Save changes";
  $("note-form").scrollIntoView({ block: "start", behavior: "smooth" });
  $("note-title").focus({ preventScroll: true });
  guardUnsavedText();
}

function stopEditing() {
  state.editingId = null;
  state.editingVersion = null;
  $("note-form").reset();
  $("note-form-heading").textContent = "New note";
  $("note-publish-row").hidden = false;
  $("note-cancel").hidden = true;
  $("note-save").textContent = "Save note";
  guardUnsavedText();
}

/** After a 412: the note at `path` as it is now, shown in the list (and answered). */
async function showCurrentVersion(path) {
  const current = member(await api("GET", path), "note");
  showMyNote(current);
  return current;
}

async function saveNote(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const title = $("note-title").value.trim();
  const body = $("note-body").value;
  if (!title) {
    say("A note needs a title.", "error");
    $("note-title").focus();
    return;
  }
  for (const [field, text, max, what] of [
    ["note-title", title, TITLE_MAX_CHARS, "A title"],
    ["note-body", body, BODY_MAX_CHARS, "The text"],
  ]) {
    const chars = [...text].length;
    if (chars > max) {
      say(`${what} can have at most ${max.toLocaleString("en")} characters; this one has ${chars.toLocaleString("en")}.`, "error");
      $(field).focus();
      return;
    }
  }
  const editingId = state.editingId;
  let conflict = false;
  const saved = await busy(form, async () => {
    if (!editingId) return member(await api("POST", "/api/notes", { title, body, published: $("note-publish").checked }), "note");
    const path = `/api/notes/${idPath(editingId)}`;
    try {
      // Saved only on top of the version the editor opened: another tab's or device's change
      // since then is never overwritten unseen.
      return member(await api("PATCH", path, { title, body }, ifVersion(state.editingVersion)), "note");
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 412)) throw error;
      conflict = true;
      const current = await showCurrentVersion(path);
      // The user has now been shown this version: saving again replaces it, knowingly.
      if (current && state.editingId === editingId) state.editingVersion = current.updated_at;
      return null;
    }
  });
  if (conflict) {
    say(
      "This note was changed in another tab or on another device since you opened it; it is shown below as it is now. Your text is still in the editor: save again to replace that version with it.",
      "error",
    );
    return;
  }
  if (!saved) return;
  const item = showMyNote(saved, { prepend: !editingId });
  stopEditing();
  say(editingId ? "Changes saved." : saved.published ? "Note saved and published." : "Note saved.");
  item.querySelector("button")?.focus({ preventScroll: true });
  if (!editingId) $("note-title").focus();
}

async function onMyNoteAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const item = button.closest("[data-note-id]");
  const id = item.dataset.noteId;
  const note = state.my.notes.get(id);
  const action = button.dataset.action;
  if (action === "edit") {
    if (!note) return;
    const discard =
      !editorHasUnsavedText() ||
      window.confirm(`The editor holds text you have not saved. Discard it and edit “${note.title}” instead?`);
    if (discard) startEditing(note);
    return;
  }
  if (action === "delete" && !window.confirm(`Delete “${note?.title ?? "this note"}”? This cannot be undone.`)) return;

  const path = `/api/notes/${idPath(id)}`;
  // Only on top of the version the list shows: what the user chose to publish or delete.
  const version = note ? ifVersion(note.updated_at) : {};
  const requests = {
    publish: async () => member(await api("PUT", `${path}/publication`, undefined, version), "note"),
    unpublish: async () => member(await api("DELETE", `${path}/publication`, undefined, version), "note"),
    delete: async () => noContent(await api("DELETE", path, undefined, version)),
  };
  let missing = false;
  let conflict = false;
  // The note as changed; null after a delete (and after a 404 or 412, told below).
  const changed = await busy(button, async () => {
    try {
      return await requests[action]();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        missing = true;
        return null;
      }
      if (error instanceof ApiError && error.status === 412) {
        conflict = true;
        await showCurrentVersion(path);
        return null;
      }
      throw error;
    }
  });
  if (conflict) {
    say("This note was changed in another tab or on another device; it is shown below as it is now. Check it and try again.", "error");
  } else if (missing) {
    forgetMyNote(id);
    say("That note no longer exists.", "error");
  } else if (action === "delete" && changed === null) {
    forgetMyNote(id);
    say("Note deleted.");
  } else if (changed) {
    // Publishing the note open in the editor, on top of the version the editor opened, changes
    // neither title nor body: the editor's text still applies on top of the new version, and
    // its save must not be refused as a change made elsewhere.
    if (state.editingId === id && note && state.editingVersion === note.updated_at) {
      state.editingVersion = changed.updated_at;
    }
    const updated = showMyNote(changed);
    say(changed.published ? "Published. Anyone with the link can read it." : "Unpublished. Only you can see it now.");
    updated.querySelector(`button[data-action="${changed.published ? "unpublish" : "publish"}"]`)?.focus();
  }
}

// ---------------------------------------------------------------------------------------------

function start() {
  $("signin-form").addEventListener("submit", signIn);
  $("signup-form").addEventListener("submit", signUp);
  $("note-form").addEventListener("submit", saveNote);
  $("note-cancel").addEventListener("click", () => {
    stopEditing();
    say("Editing cancelled.");
  });
  $("signout").addEventListener("click", signOut);
  $("session-retry").addEventListener("click", (event) => busy(event.currentTarget, checkSession));
  $("my-notes-list").addEventListener("click", onMyNoteAction);
  $("my-notes-more").addEventListener("click", () => loadMyNotes(false));
  $("feed-more").addEventListener("click", () => loadFeed(false));
  $("feed-refresh").addEventListener("click", () => loadFeed(true));
  window.addEventListener("hashchange", route);
  window.addEventListener("pageshow", recheckRestoredPage);
  $("note-form").addEventListener("input", guardUnsavedText);
  otherTabs?.addEventListener("message", followOtherTab);
  // Forms stay inert until this module runs, so nothing is ever submitted the browser's way.
  for (const id of ["signin-submit", "signup-submit", "note-save"]) $(id).disabled = false;
  route();
  checkSession();
  showHealth();
}

start();
