// A note's public page: /note?id=<id> (also reachable as /note.html?id=<id>).
// The note is attacker-controlled text, so it is only ever set with textContent.
//
// Imports name modules by their absolute asset path, which the build rewrites (see api.js).
import { ApiError, api, idPath, member, showHealth, timeElement } from "/assets/api.js";

const $ = (id) => document.getElementById(id);

function showMissing() {
  $("public-note-loading").hidden = true;
  $("note-missing").hidden = false;
  document.title = "Note not found · edgestack";
}

/** Shows why the note did not load, with a button that tries again. */
function showFailure(error) {
  $("public-note-loading").hidden = true;
  $("public-note-failed").hidden = false;
  const status = $("status");
  status.dataset.kind = "error";
  status.textContent = error instanceof ApiError ? error.message : `Something went wrong: ${error}`;
}

async function showNote() {
  const id = new URLSearchParams(location.search).get("id");
  if (!id) {
    showMissing();
    return;
  }
  try {
    const note = member(await api("GET", `/api/public/notes/${idPath(id)}`), "note");
    $("public-note-title").textContent = note.title;
    $("public-note-date").replaceChildren(timeElement(note.published_at));
    $("public-note-body").textContent = note.body ?? "";
    document.title = `${note.title} · edgestack`;
    $("public-note-loading").hidden = true;
    $("public-note-failed").hidden = true;
    $("status").textContent = "";
    $("public-note").hidden = false;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 400)) {
      $("public-note-failed").hidden = true;
      showMissing();
    } else {
      showFailure(error);
    }
  }
}

async function tryAgain(event) {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    await showNote();
  } finally {
    button.disabled = false;
  }
  // Still failing: the focus goes back to the button it was on (disabling it took the focus).
  if (!$("public-note-failed").hidden) button.focus();
}

$("public-note-retry").addEventListener("click", tryAgain);
showNote();
showHealth();
