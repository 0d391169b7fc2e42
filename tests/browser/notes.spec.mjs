// Browser test of the web UI against a running edgestack (see README.md in this folder).
//
//   BASE_URL=http://127.0.0.1:8787 ARTIFACTS_DIR=target/browser node tests/browser/notes.spec.mjs
//
// One scenario, three users: A signs up, writes a note (a change the server never answers is
// given up after the page's deadline; an edit from a second tab is not overwritten by A's stale
// editor) and publishes it with a second note at once (the page sends
// one change at a time); B (signed out, fresh
// context) finds it in the public feed and reads its public page (reads the server never answers
// are given up, and tried again from the page); A sees it in "my notes",
// deletes it (so runs leave no public notes behind; B then gets the not-found page) and signs out.
// Then C (A's account in a fresh context) and B meet what goes wrong while the page is in use
// (`troubles`). Also fails on any page error, CSP violation or asset that does not load.
// Plain Node (no test framework): exit code 0 on success, 1 on failure.
import { mkdir, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { chromium } from "playwright-core";

const BASE_URL = (process.env.BASE_URL || "http://127.0.0.1:8787").replace(/\/+$/, "");
const ARTIFACTS_DIR = path.resolve(process.env.ARTIFACTS_DIR || "target/browser-artifacts");
const CHROMIUM_PATH = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const STEP_TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS || 15_000);
const PASSWORD = "correct horse battery staple";

const run = randomBytes(6).toString("hex");
// A local part beyond ASCII, which the API takes (docs/api.md § Accounts): the form must send it
// as typed, not refuse it the way a browser's email field does.
const email = `zo\u00eb-${run}@example.com`;
const title = `Browser note ${run}`;
const body = `Written by the browser test (${run}).\nSecond line with <b>markup</b> that must stay text.`;

class StepFailure extends Error {}

const log = (line) => process.stdout.write(`${line}\n`);
const contexts = []; // { name, context, page, problems }

/** Runs one step with its own deadline; a failure names the step and what was expected. */
async function step(name, expectation, action) {
  const started = Date.now();
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS);
  });
  try {
    await Promise.race([action(), deadline]);
  } catch (error) {
    const reason = String(error?.message ?? error).split("\n")[0];
    throw new StepFailure(`step "${name}" failed: expected ${expectation}; ${reason}`);
  } finally {
    clearTimeout(timer);
  }
  log(`  ok   ${name} (${Date.now() - started} ms)`);
}

/** A fresh browser context (own cookies) with one page whose problems are collected. */
async function newUser(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const text = message.text();
    // Chromium logs every non-2xx fetch ("Failed to load resource: … 401"); API errors are
    // expected (GET /api/me while signed out) and shown in the page, so only assets count.
    const source = message.location()?.url ?? "";
    if (text.startsWith("Failed to load resource") && source.includes("/api/")) return;
    problems.push(`console error: ${text}${source ? ` (${source})` : ""}`);
  });
  page.on("response", (response) => {
    const url = new URL(response.url());
    if (url.pathname.startsWith("/assets/") && response.status() >= 400) {
      problems.push(`asset ${url.pathname} answered ${response.status()}`);
    }
  });
  page.on("requestfailed", (request) => {
    const url = new URL(request.url());
    if (url.origin === new URL(BASE_URL).origin && url.pathname.startsWith("/assets/")) {
      problems.push(`asset ${url.pathname} failed: ${request.failure()?.errorText}`);
    }
  });
  const user = { name, context, page, problems };
  contexts.push(user);
  return user;
}

async function screenshot(page, name) {
  const file = path.join(ARTIFACTS_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

async function statusText(page) {
  try {
    return ((await page.locator("#status").textContent({ timeout: 1000 })) ?? "").trim();
  } catch {
    return "";
  }
}

/** Waits until `locator` is visible; on timeout says what the page's status line showed. */
async function visible(page, locator, what) {
  try {
    await locator.first().waitFor({ state: "visible", timeout: STEP_TIMEOUT_MS - 1000 });
  } catch {
    const status = await statusText(page);
    throw new Error(`${what} did not appear${status ? `; the page says: "${status}"` : ""} (url ${page.url()})`);
  }
}

async function expectText(locator, expected, what) {
  const actual = await locator.textContent();
  if (actual !== expected) {
    throw new Error(`${what} is ${JSON.stringify(actual)}, wanted ${JSON.stringify(expected)}`);
  }
}

function myNote(page) {
  return page.locator('#my-notes-list [data-testid="my-note"]').filter({
    has: page.locator('[data-testid="note-title"]', { hasText: title }),
  });
}

async function checkReachable() {
  try {
    const response = await fetch(`${BASE_URL}/api/health`, { signal: AbortSignal.timeout(5000) });
    await response.arrayBuffer();
  } catch (error) {
    throw new StepFailure(`cannot reach ${BASE_URL} (${error.cause?.code ?? error.message}); is the stack running (cargo xtask dev)?`);
  }
}

async function scenario(browser) {
  const a = await newUser(browser, "A");

  await step("A opens the start page signed out", "the sign-up form", async () => {
    await a.page.goto(`${BASE_URL}/`);
    await visible(a.page, a.page.locator("#signup-form"), "the sign-up form (#signup-form)");
    await a.page.locator("#signup-submit:enabled").waitFor();
  });

  await step(`A signs up as ${email}`, "to be signed in", async () => {
    await a.page.fill("#signup-email", email);
    await a.page.fill("#signup-password", PASSWORD);
    await a.page.click("#signup-submit");
    await visible(a.page, a.page.locator("#signed-in-as", { hasText: email }), `"${email}" in #signed-in-as`);
    await visible(a.page, a.page.locator("#note-form"), "the note editor (#note-form)");
  });

  await step("A writes a note", "the note in my notes, private", async () => {
    await a.page.fill("#note-title", title);
    await a.page.fill("#note-body", body);
    await a.page.click("#note-save");
    const note = myNote(a.page);
    await visible(a.page, note, `a note titled "${title}" in #my-notes-list`);
    await expectText(note.locator('[data-testid="note-state"]'), "Private", "its state");
  });

  await step(
    "A's change that the server never answers is given up",
    "the page says so after its deadline (20 s, on the page's fake clock), and the next change goes through",
    async () => {
      const page = await a.context.newPage();
      const unanswered = `Unanswered ${run}`;
      // The first note created from this page is held on its way and never answered.
      const held = [];
      const holdCreate = (route) => (route.request().method() === "POST" && held.length === 0 ? held.push(route) : route.continue());
      try {
        await page.clock.install();
        await page.goto(`${BASE_URL}/`);
        await visible(page, myNote(page), "A's note in a new tab");
        await page.route("**/api/notes", holdCreate);
        await page.fill("#note-title", unanswered);
        const sent = page.waitForRequest((request) => request.method() === "POST" && request.url().endsWith("/api/notes"));
        await page.click("#note-save");
        await sent;
        await page.clock.runFor(21_000);
        await visible(page, page.locator("#status", { hasText: "No answer from the server within 20 s" }), "the deadline's message");
        await page.click("#note-save");
        const created = page.locator('#my-notes-list [data-testid="my-note"]').filter({
          has: page.locator('[data-testid="note-title"]', { hasText: unanswered }),
        });
        await visible(page, created, `the note "${unanswered}", saved by the second click`);
        if (held.length !== 1) throw new Error(`${held.length} creations were held`);
        page.once("dialog", (dialog) => dialog.accept());
        await created.locator('button[data-action="delete"]').click();
        await created.waitFor({ state: "detached" });
      } finally {
        await page.unroute("**/api/notes", holdCreate);
        for (const route of held) await route.abort().catch(() => {});
        await page.close();
      }
    },
  );

  await step(
    "A's publish and save from a page opened before a second tab's change do not overwrite it",
    "the conflict told and the text kept; saving again applies it",
    async () => {
      await myNote(a.page).locator('button[data-action="edit"]').click();
      await a.page.locator("#note-cancel:visible").waitFor();
      const second = await a.context.newPage();
      try {
        await second.goto(`${BASE_URL}/`);
        await visible(second, myNote(second), "the note in the second tab");
        await myNote(second).locator('button[data-action="edit"]').click();
        await second.fill("#note-body", `Changed in a second tab (${run}).`);
        await second.click("#note-save");
        await visible(second, second.locator("#status", { hasText: "Changes saved." }), "the second tab's save");
      } finally {
        await second.close();
      }
      // Publishing from the stale list is refused too, and refreshes the list — which must not
      // let the editor's save through on top of the version it never showed in the editor.
      await myNote(a.page).locator('button[data-action="publish"]').click();
      await visible(a.page, a.page.locator("#status", { hasText: "Check it and try again" }), "the conflict on publishing");
      await expectText(myNote(a.page).locator('[data-testid="note-state"]'), "Private", "its state");
      await a.page.fill("#note-body", `${body} `);
      await a.page.click("#note-save");
      await visible(a.page, a.page.locator("#status", { hasText: "changed in another tab" }), "the conflict message");
      await visible(a.page, myNote(a.page).locator(".excerpt", { hasText: "Changed in a second tab" }), "the second tab's version in the list");
      if ((await a.page.inputValue("#note-body")) !== `${body} `) throw new Error("the editor lost the text");
      await a.page.fill("#note-body", body);
      await a.page.click("#note-save");
      await visible(a.page, a.page.locator("#status", { hasText: "Changes saved." }), "the second save");
      await visible(a.page, myNote(a.page).locator(".excerpt", { hasText: "Written by the browser test" }), "A's text in the list");
    },
  );

  await step(
    "A publishes the note and a second one at once",
    "both Published, the second change sent only after the first was answered",
    async () => {
      const otherTitle = `Second note ${run}`;
      await a.page.fill("#note-title", otherTitle);
      await a.page.click("#note-save");
      const other = a.page.locator('#my-notes-list [data-testid="my-note"]').filter({
        has: a.page.locator('[data-testid="note-title"]', { hasText: otherTitle }),
      });
      await visible(a.page, other, `a note titled "${otherTitle}" in #my-notes-list`);
      // Each change's answer sets the read-your-writes cookie and the browser keeps the last
      // one to arrive, so the page sends its changes one at a time (docs/edge-data-path.md).
      const timeline = [];
      const isPublication = (request) => request.method() === "PUT" && request.url().endsWith("/publication");
      const started = (request) => isPublication(request) && timeline.push(`sent ${request.url()}`);
      const answered = (request) => isPublication(request) && timeline.push(`answered ${request.url()}`);
      a.page.on("request", started);
      a.page.on("requestfinished", answered);
      // The first change is held a moment on its way, so that the second click comes while it
      // is under way.
      let held = false;
      const holdFirst = async (route) => {
        if (!held) {
          held = true;
          await new Promise((resolve) => setTimeout(resolve, 1500));
        }
        await route.continue();
      };
      await a.page.route("**/api/notes/*/publication", holdFirst);
      try {
        const note = myNote(a.page);
        // One click after the other (two clicks at once can land on a list that is still
        // moving); the second comes while the first change is held.
        await note.locator('button[data-action="publish"]').click();
        await other.locator('button[data-action="publish"]').click();
        for (const [item, what] of [[note, title], [other, otherTitle]]) {
          await visible(a.page, item.locator('[data-testid="note-state"]', { hasText: "Published" }), `${what} Published`);
        }
        await visible(a.page, note.locator('[data-testid="note-public-link"]'), "a link to the public page");
      } finally {
        await a.page.unroute("**/api/notes/*/publication", holdFirst);
        a.page.off("request", started);
        a.page.off("requestfinished", answered);
      }
      const kinds = timeline.map((event) => event.split(" ")[0]).join(", ");
      if (kinds !== "sent, answered, sent, answered") throw new Error(`the two changes overlapped: ${timeline.join("; ")}`);
      await screenshot(a.page, "1-a-published");
      // Runs leave no public notes behind.
      a.page.once("dialog", (dialog) => dialog.accept());
      await other.locator('button[data-action="delete"]').click();
      await other.waitFor({ state: "detached" });
    },
  );

  const b = await newUser(browser, "B");
  let publicUrl = "";

  await step("B (signed out) finds the note in the public feed", "a feed entry with the title", async () => {
    await b.page.goto(`${BASE_URL}/#feed`);
    await visible(b.page, b.page.locator("#view-feed"), "the public feed (#view-feed)");
    const entry = b.page.locator('#feed-list [data-testid="feed-note"]', { hasText: title });
    // Other runs may publish at the same time; page on until the note shows up.
    for (let pages = 1; ; pages += 1) {
      await b.page.locator('#feed-list:not([aria-busy="true"])').waitFor();
      if ((await entry.count()) > 0 || pages >= 5 || !(await b.page.locator("#feed-more").isVisible())) break;
      await b.page.click("#feed-more");
    }
    await visible(b.page, entry, `a feed entry titled "${title}" in #feed-list`);
  });

  await step("B opens the note's public page", "the title and body on note?id=…", async () => {
    const link = b.page.locator('#feed-list [data-testid="feed-note"]', { hasText: title }).locator('[data-testid="feed-note-link"]');
    await link.click();
    await b.page.waitForURL(/\/note(\.html)?\?id=[^&]+/);
    publicUrl = b.page.url();
    await visible(b.page, b.page.locator("#public-note"), "the note (#public-note)");
    await expectText(b.page.locator("#public-note-title"), title, "#public-note-title");
    await expectText(b.page.locator("#public-note-body"), body, "#public-note-body");
    const markup = await b.page.locator("#public-note-body b").count();
    if (markup !== 0) throw new Error("the note's body was rendered as HTML");
    await visible(b.page, b.page.locator("#public-note-date time"), "the publication date (#public-note-date time)");
    await oneTopLevelHeading(b.page, "a note's page");
    await screenshot(b.page, "2-b-public-note");
  });

  await step(
    "Reads the server never answers are given up, with a way to try again",
    "after the page's deadline (20 s, on the page's fake clock) each says so and offers to try again, which loads it: A's account and notes, B's feed and the note's public page",
    async () => {
      const held = [];
      const pages = [];
      /** Holds the first GET of `pattern` on `page` unanswered; `arrived` settles when it comes. */
      const holdFirstRead = async (page, pattern) => {
        let arrive;
        let holding = true;
        const arrived = new Promise((resolve) => { arrive = resolve; });
        await page.route(pattern, (route) => {
          if (!holding || route.request().method() !== "GET") return route.continue();
          holding = false;
          held.push(route);
          arrive();
          return undefined;
        });
        return { arrived };
      };
      /** Moves the fake clock past the deadline: the page says so, and its `retry` loads again. */
      const givenUp = async (page, retry, what) => {
        await page.clock.runFor(21_000);
        await visible(page, page.locator('#status[data-kind="error"]', { hasText: "No answer from the server within 20 s" }), `the deadline's message for ${what}`);
        await visible(page, retry, `a way to try ${what} again`);
        await oneTopLevelHeading(page, `the page with ${what} not loaded`);
        await retry.click();
      };
      const open = async (context, url, patterns) => {
        const page = await context.newPage();
        pages.push(page);
        await page.clock.install();
        const holds = [];
        for (const pattern of patterns) holds.push(await holdFirstRead(page, pattern));
        await page.goto(url);
        return { page, holds };
      };
      try {
        const mine = await open(a.context, `${BASE_URL}/`, ["**/api/me", "**/api/notes?*"]);
        await mine.holds[0].arrived;
        await givenUp(mine.page, mine.page.locator("#session-retry"), "A's account");
        await mine.holds[1].arrived;
        await givenUp(mine.page, mine.page.locator("#my-notes-more", { hasText: "Try again" }), "A's notes");
        await visible(mine.page, myNote(mine.page), "A's note after trying again");

        const feed = await open(b.context, `${BASE_URL}/#feed`, ["**/api/public/notes?*"]);
        await feed.holds[0].arrived;
        await givenUp(feed.page, feed.page.locator("#feed-more", { hasText: "Try again" }), "the feed");
        await visible(feed.page, feed.page.locator('#feed-list [data-testid="feed-note"]'), "the feed after trying again");

        const note = await open(b.context, publicUrl, ["**/api/public/notes/*"]);
        await note.holds[0].arrived;
        await givenUp(note.page, note.page.locator("#public-note-retry"), "the note");
        await visible(note.page, note.page.locator("#public-note-title", { hasText: title }), "the note after trying again");
        if (await statusText(note.page)) throw new Error(`the note's page still says "${await statusText(note.page)}"`);
      } finally {
        for (const route of held) await route.abort().catch(() => {});
        for (const page of pages) await page.close();
      }
    },
  );

  await step("A sees the published note in my notes after a reload", "the note, Published", async () => {
    await a.page.reload();
    const note = myNote(a.page);
    await visible(a.page, note, `a note titled "${title}" in #my-notes-list`);
    await expectText(note.locator('[data-testid="note-state"]'), "Published", "its state");
    const href = await note.locator('[data-testid="note-public-link"]').getAttribute("href");
    if (!publicUrl.endsWith(href)) throw new Error(`public link ${href} differs from the page B opened (${publicUrl})`);
  });

  await step("A deletes the note", "it to leave my notes", async () => {
    a.page.once("dialog", (dialog) => dialog.accept());
    await myNote(a.page).locator('button[data-action="delete"]').click();
    await myNote(a.page).waitFor({ state: "detached" }).catch(async () => {
      const status = await statusText(a.page);
      throw new Error(`the note is still listed${status ? `; the page says: "${status}"` : ""}`);
    });
  });

  await step("B sees a friendly message for the deleted note", "#note-missing on its public page", async () => {
    // Allow a short-lived read cache a few seconds, but a deleted note must stop being public.
    const until = Date.now() + STEP_TIMEOUT_MS - 3000;
    for (;;) {
      await b.page.goto(publicUrl);
      await b.page.locator("#public-note:visible, #note-missing:visible, #status:not(:empty)").first().waitFor();
      if (await b.page.locator("#note-missing").isVisible()) break;
      if (Date.now() > until) {
        const status = await statusText(b.page);
        throw new Error(status ? `the page says: "${status}"` : `the deleted note is still served at ${publicUrl}`);
      }
      await b.page.waitForTimeout(1000);
    }
  });

  await step("Every page has exactly one top-level heading", "one h1 shown on each page, signed in and out", async () => {
    await oneTopLevelHeading(a.page, "the start page, signed in");
    for (const [url, ready, what] of [
      [`${BASE_URL}/`, "#signin-submit:enabled", "the start page, signed out"],
      [`${BASE_URL}/#feed`, '#feed-list:not([aria-busy="true"])', "the public feed"],
      [publicUrl, "#note-missing:visible", "a note's page, not found"],
    ]) {
      await b.page.goto(url);
      // Attached, not visible: on a fresh stack the feed is empty, and an empty list has no box.
      await b.page.locator(ready).waitFor({ state: "attached" });
      await oneTopLevelHeading(b.page, what);
    }
    // Another page: Chromium logs the 404 of the address itself as an error, which is the point.
    const missing = await b.context.newPage();
    try {
      await missing.goto(`${BASE_URL}/no-such-page-${run}`);
      await oneTopLevelHeading(missing, "the site's not-found page");
    } finally {
      await missing.close();
    }
  });

  await step(
    "B opens the start page and a note's page while their script does not load",
    "after a while, a line that says so with a link to reload (not a bare 'Loading…' for ever)",
    async () => {
      // Its own context, outside `contexts`: the failed script is the point, not a problem.
      const context = await browser.newContext();
      try {
        const page = await context.newPage();
        await page.route("**/assets/*.js", (route) => route.abort("connectionreset"));
        for (const [url, line] of [[`${BASE_URL}/`, "#loading"], [publicUrl, "#public-note-loading"]]) {
          await page.goto(url);
          // The line shows after 8 s of CSS time, which finishing its animations moves on.
          await page.evaluate(() => document.getAnimations().forEach((animation) => animation.finish()));
          const reload = page.locator(`${line} a`, { hasText: "Reload the page" });
          if (!(await reload.isVisible()) || !(await reload.evaluate((link) => link.checkVisibility({ visibilityProperty: true })))) {
            throw new Error(`${new URL(url).pathname} shows no way out of "${(await page.textContent(line))?.trim()}"`);
          }
        }
      } finally {
        await context.close();
      }
    },
  );

  await step("B's pages have WCAG AA contrast, light and dark", "4.5:1 (3:1 for large text) for every text shown, 3:1 for the focus ring", async () => {
    const problems = [];
    for (const colorScheme of ["light", "dark"]) {
      await b.page.emulateMedia({ colorScheme });
      for (const [url, ready] of [[`${BASE_URL}/`, "#signin-submit:enabled"], [publicUrl, "#note-missing:visible"]]) {
        await b.page.goto(url);
        await b.page.locator(ready).waitFor();
        for (const problem of await b.page.evaluate(contrastProblems)) problems.push(`${colorScheme} ${new URL(url).pathname}: ${problem}`);
      }
    }
    await b.page.emulateMedia({ colorScheme: null });
    if (problems.length > 0) throw new Error(problems.join("; "));
  });

  await step("A signs out", "the sign-in form and no notes", async () => {
    await a.page.click("#signout");
    await visible(a.page, a.page.locator("#signin-form"), "the sign-in form (#signin-form)");
    const left = await a.page.locator('#my-notes-list [data-testid="my-note"]').count();
    if (left !== 0) throw new Error(`${left} notes are still on the page`);
    await a.page.reload();
    await visible(a.page, a.page.locator("#signin-form"), "the sign-in form after a reload (session gone)");
    await screenshot(a.page, "3-a-signed-out");
  });

  await troubles(browser, b);

  await step("no page errors, CSP violations or missing assets", "none", async () => {
    const problems = contexts.flatMap((user) => user.problems.map((problem) => `${user.name}: ${problem}`));
    if (problems.length > 0) throw new Error(problems.join("; "));
  });
}

/**
 * Runs in the page: each shown element with text of its own whose contrast with what is behind
 * it is under WCAG 2.2 AA (1.4.3: 4.5:1, or 3:1 from 24 px, or 18.66 px bold; disabled controls
 * are exempt, as the criterion says), and a focus ring under 3:1 (1.4.11).
 */
function contrastProblems() {
  const rgba = (css) => {
    const [r, g, b, a = 1] = css.match(/[\d.]+/g).map(Number);
    return { r, g, b, a };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a),
    g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a),
    a: 1,
  });
  const background = (element) => {
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const color = rgba(getComputedStyle(node).backgroundColor);
      if (color.a > 0) layers.push(color);
      if (color.a === 1) break;
    }
    return layers.reduceRight((below, layer) => over(layer, below), { r: 255, g: 255, b: 255, a: 1 });
  };
  const luminance = ({ r, g, b }) => {
    const channel = (c) => {
      const s = c / 255;
      return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const ratioOf = (a, b) => {
    const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (light + 0.05) / (dark + 0.05);
  };
  const problems = [];
  // The focus ring (1.4.11, 3:1 against what is around it), on a text field, which always shows it.
  const field = document.querySelector("input:not([type=checkbox]):not([disabled])");
  if (field?.checkVisibility()) {
    field.focus();
    const ring = rgba(getComputedStyle(field).outlineColor);
    const ratio = ratioOf(over(ring, background(field.parentElement)), background(field.parentElement));
    if (ratio < 3) problems.push(`the focus ring ${ratio.toFixed(2)}:1`);
    field.blur();
  }
  for (const element of document.querySelectorAll("body *")) {
    const ownText = [...element.childNodes].some((node) => node.nodeType === Node.TEXT_NODE && node.textContent.trim());
    if (!ownText || !element.checkVisibility({ opacityProperty: true }) || element.closest(":disabled")) continue;
    const style = getComputedStyle(element);
    const behind = background(element);
    const text = over(rgba(style.color), behind);
    const ratio = ratioOf(text, behind);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      problems.push(`"${element.textContent.trim().slice(0, 30)}" (${element.tagName.toLowerCase()}) ${ratio.toFixed(2)}:1`);
    }
  }
  return problems;
}

/**
 * Fails unless the page shows exactly one top-level heading (`h1`): what the page is about, for
 * people who move by headings (WCAG 1.3.1 and 2.4.6). Hidden ones do not count.
 */
async function oneTopLevelHeading(page, what) {
  const shown = await page.locator("h1").evaluateAll((headings) =>
    headings.filter((heading) => heading.checkVisibility()).map((heading) => heading.textContent.trim()));
  if (shown.length !== 1) throw new Error(`${what} (${page.url()}) shows ${shown.length} top-level headings: ${JSON.stringify(shown)}`);
}

/** Whether the element with this id has the focus (a button in a list: its `data-action`). */
const focusOf = (page) => page.evaluate(() => document.activeElement?.id || document.activeElement?.dataset.action || document.activeElement?.tagName);

/**
 * What goes wrong while the page is in use, with user C (A's account on another device, deleted
 * at the end): each step names the trouble and what the page must do about it.
 */
async function troubles(browser, b) {
  const c = await newUser(browser, "C");
  const cNote = (page, text) => page.locator('#my-notes-list [data-testid="my-note"]').filter({
    has: page.locator('[data-testid="note-title"]', { hasText: text }),
  });

  // A's account, signed out by now (a sign-in: sign-ups are limited to 5 a minute per client).
  await step(`C signs in as ${email} on another device`, "to be signed in", async () => {
    await c.page.goto(`${BASE_URL}/`);
    await c.page.locator("#signin-submit:enabled").waitFor();
    await c.page.fill("#signin-email", email);
    await c.page.fill("#signin-password", PASSWORD);
    await c.page.click("#signin-submit");
    await visible(c.page, c.page.locator("#note-form"), "the note editor (#note-form)");
  });

  const draftTitle = `Draft ${run}`;
  const draftBody = `Typed while the session ended (${run}).`;
  await step(
    "C's session ends on the server (as when it expires) while C writes a note",
    "the sign-in form with C's email and the focus on the password; signing in gives the text back, and it saves",
    async () => {
      await c.page.fill("#note-title", draftTitle);
      await c.page.fill("#note-body", draftBody);
      // Ended by a client that is not a page of this browser: the page learns it from a 401.
      const ended = await c.context.request.delete(`${BASE_URL}/api/sessions/current`, { headers: { "x-edgestack-client": "1" } });
      if (ended.status() !== 204) throw new Error(`DELETE /api/sessions/current answered ${ended.status()}`);
      await c.page.click("#note-save");
      await visible(c.page, c.page.locator("#status", { hasText: "Your session has ended" }), "the session-ended message");
      const prefilled = await c.page.inputValue("#signin-email");
      const focus = await focusOf(c.page);
      await c.page.fill("#signin-email", email);
      await c.page.fill("#signin-password", PASSWORD);
      await c.page.press("#signin-password", "Enter");
      await visible(c.page, c.page.locator("#note-form"), "the note editor after signing in again");
      const kept = [await c.page.inputValue("#note-title"), await c.page.inputValue("#note-body")];
      if (kept[0] !== draftTitle || kept[1] !== draftBody) throw new Error(`the editor holds ${JSON.stringify(kept)}: the text was lost`);
      if (prefilled !== email) throw new Error(`the sign-in form had the email ${JSON.stringify(prefilled)}`);
      if (focus !== "signin-password") throw new Error(`the focus was on ${focus}, not the password`);
      await c.page.click("#note-save");
      await visible(c.page, cNote(c.page, draftTitle), "the saved draft in my notes");
    },
  );

  await step(
    "C leaves for another page, the session ends meanwhile (as when it expires), and C goes Back",
    "the page the back/forward cache restores asks the server again: the sign-in form, C's notes no longer shown",
    async () => {
      await c.page.evaluate(() => {
        window.restoredFromCache = true;
      });
      await c.page.goto(`${BASE_URL}/note?id=elsewhere`);
      const ended = await c.context.request.delete(`${BASE_URL}/api/sessions/current`, { headers: { "x-edgestack-client": "1" } });
      if (ended.status() !== 204) throw new Error(`DELETE /api/sessions/current answered ${ended.status()}`);
      // Not `page.goBack()`: it waits for a load event, and a page the cache restores has none.
      await c.page.evaluate(() => history.back());
      await c.page.waitForFunction(() => location.pathname === "/" && document.readyState === "complete");
      if (!(await c.page.evaluate(() => window.restoredFromCache === true))) {
        const why = await c.page.evaluate(() => JSON.stringify(performance.getEntriesByType("navigation")[0]?.notRestoredReasons ?? null));
        throw new Error(`the page was loaded anew, not restored from the back/forward cache, so this step tests nothing (${why})`);
      }
      await visible(c.page, c.page.locator("#signin-form"), "the sign-in form");
      if (await cNote(c.page, draftTitle).isVisible()) throw new Error("C's notes are still shown");
      await c.page.fill("#signin-email", email);
      await c.page.fill("#signin-password", PASSWORD);
      await c.page.click("#signin-submit");
      await visible(c.page, cNote(c.page, draftTitle), "C's notes after signing in again");
    },
  );

  await step(
    "C types in the editor, leaves for another page and goes Back, still signed in",
    "the restored page still shows C's notes and the text typed",
    async () => {
      const typed = `Typed before leaving ${run}`;
      await c.page.fill("#note-title", typed);
      await c.page.evaluate(() => {
        window.restoredFromCache = true;
      });
      await c.page.goto(`${BASE_URL}/note?id=elsewhere`);
      await c.page.evaluate(() => history.back());
      await c.page.waitForFunction(() => location.pathname === "/" && document.readyState === "complete");
      if (!(await c.page.evaluate(() => window.restoredFromCache === true))) throw new Error("the page was loaded anew, not restored");
      await visible(c.page, cNote(c.page, draftTitle), "C's notes");
      if ((await c.page.inputValue("#note-title")) !== typed) throw new Error("the typed text was lost");
      await c.page.fill("#note-title", "");
    },
  );

  await step(
    "C's Load more with a cursor another release gave out",
    "the list starts over from the first page (no error), and Load more then goes on",
    async () => {
      // 21 more notes (22 in all): a second page.
      for (let n = 1; n <= 21; n += 1) {
        const response = await c.context.request.post(`${BASE_URL}/api/notes`, {
          headers: { "x-edgestack-client": "1" },
          data: { title: `Filler ${n} ${run}` },
        });
        if (response.status() !== 201) throw new Error(`creating filler note ${n} answered ${response.status()}`);
      }
      await c.page.reload();
      await visible(c.page, c.page.locator("#my-notes-more"), "Load more");
      // The server refuses a cursor of another release as it refuses any it did not give out.
      let swapped = 0;
      const swapCursor = (route) => {
        const url = new URL(route.request().url());
        if (!url.searchParams.has("cursor") || swapped > 0) return route.continue();
        swapped += 1;
        url.searchParams.set("cursor", "a-cursor-from-another-release");
        return route.continue({ url: url.toString() });
      };
      await c.page.route("**/api/notes?*", swapCursor);
      try {
        await c.page.evaluate(() => { document.getElementById("status").textContent = ""; });
        await c.page.click("#my-notes-more");
        await c.page.locator("#status:not(:empty)").waitFor();
        const said = await statusText(c.page);
        if (!said.includes("loaded again from the start")) throw new Error(`the page says: "${said}"`);
        await visible(c.page, c.page.locator("#my-notes-more"), "Load more after starting over");
        await c.page.click("#my-notes-more");
        await c.page.locator("#my-notes-more").waitFor({ state: "hidden" });
      } finally {
        await c.page.unroute("**/api/notes?*", swapCursor);
      }
      const count = await c.page.locator('#my-notes-list [data-testid="my-note"]').count();
      if (swapped !== 1 || count !== 22) throw new Error(`${count} notes listed (wanted 22), ${swapped} cursor swapped`);
    },
  );

  await step(
    "C saves a title the server refuses, from the keyboard",
    "the server's message, and the focus back in the title field (not lost to the page)",
    async () => {
      await c.page.fill("#note-title", "\u200b");
      await c.page.press("#note-title", "Enter");
      await visible(c.page, c.page.locator('#status[data-kind="error"]', { hasText: "title" }), "the server's invalid_title message");
      if ((await focusOf(c.page)) !== "note-title") throw new Error(`the focus is on ${await focusOf(c.page)}`);
    },
  );

  await step("C deletes a note with the keyboard", "the focus on a neighbouring note's button, not lost to the page", async () => {
    c.page.once("dialog", (dialog) => dialog.accept());
    await cNote(c.page, draftTitle).locator('button[data-action="delete"]').focus();
    await c.page.keyboard.press("Enter");
    await cNote(c.page, draftTitle).waitFor({ state: "detached" });
    const focus = await c.page.evaluate(() => Boolean(document.activeElement?.closest('[data-testid="my-note"]')));
    if (!focus) throw new Error(`the focus is on ${await focusOf(c.page)}`);
  });

  await step(
    "C writes a title of 150 emoji, and pastes a text one character over the limit",
    "the title saved whole (the API counts characters, not UTF-16 units); the text kept whole, refused with a message",
    async () => {
      const emoji = "\u{1F600}".repeat(150);
      await c.page.fill("#note-title", emoji);
      await c.page.click("#note-save");
      await visible(c.page, c.page.locator("#status", { hasText: "Note saved." }), "the note saved");
      const saved = await c.page.locator('#my-notes-list [data-testid="note-title"]').first().textContent();
      if (saved !== emoji) throw new Error(`the title saved has ${[...saved].length} of the 150 emoji`);
      await c.page.fill("#note-title", `Long ${run}`);
      await c.page.focus("#note-body");
      await c.page.keyboard.insertText("x".repeat(20_001));
      const pasted = (await c.page.inputValue("#note-body")).length;
      if (pasted !== 20_001) throw new Error(`the editor kept ${pasted} of the 20,001 characters pasted`);
      await c.page.click("#note-save");
      await visible(c.page, c.page.locator('#status[data-kind="error"]', { hasText: "at most 20,000 characters" }), "the limit told");
      if ((await focusOf(c.page)) !== "note-body") throw new Error(`the focus is on ${await focusOf(c.page)}`);
      await c.page.fill("#note-body", "");
    },
  );

  await step(
    "C's save answered 200 with a page that is not the API's JSON (a proxy's)",
    "an error that says so, the text still in the editor",
    async () => {
      const proxyPage = (route) => route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>Sign in to the network</title>" });
      await c.page.route("**/api/notes", proxyPage);
      try {
        await c.page.fill("#note-title", `Through a proxy ${run}`);
        await c.page.click("#note-save");
        await visible(c.page, c.page.locator('#status[data-kind="error"]', { hasText: "could not be read" }), "an error about the answer");
        if ((await c.page.inputValue("#note-title")) !== `Through a proxy ${run}`) throw new Error("the editor lost the text");
      } finally {
        await c.page.unroute("**/api/notes", proxyPage);
      }
    },
  );

  await step(
    "C's save, list and a note's page answered 200 with JSON that is not the API's",
    "each an error saying the answer could not be read (not nothing, an empty list or a script error), the text kept",
    async () => {
      const otherJson = (route) => route.fulfill({ status: 200, contentType: "application/json", body: '{"ok":true}' });
      const unreadable = (page) =>
        visible(page, page.locator('#status[data-kind="error"]', { hasText: "could not be read" }), "an error about the answer");
      await c.page.evaluate(() => { document.getElementById("status").textContent = ""; });
      await c.page.route("**/api/notes", otherJson);
      try {
        await c.page.click("#note-save");
        await unreadable(c.page);
        if ((await c.page.inputValue("#note-title")) !== `Through a proxy ${run}`) throw new Error("the editor lost the text");
      } finally {
        await c.page.unroute("**/api/notes", otherJson);
      }
      // Another page: the editor's text stays for the steps below.
      const page = await c.context.newPage();
      try {
        await page.route("**/api/notes?*", otherJson);
        await page.route("**/api/public/notes/*", otherJson);
        await page.goto(`${BASE_URL}/`);
        await unreadable(page);
        await visible(page, page.locator("#my-notes-more", { hasText: "Try again" }), "a way to try the list again");
        if (await page.locator("#my-notes-empty").isVisible()) throw new Error("the list says there are no notes");
        await page.goto(`${BASE_URL}/note?id=any`);
        await unreadable(page);
        await visible(page, page.locator("#public-note-retry"), "a way to try the note again");
      } finally {
        await page.close();
      }
    },
  );

  await step(
    "C's delete and sign-out answered 200 with JSON instead of the API's 204",
    "each an error saying the answer could not be read; the note still listed, C still signed in",
    async () => {
      const deleteAnsweredByOther = (route) =>
        route.request().method() === "DELETE"
          ? route.fulfill({ status: 200, contentType: "application/json", body: '{"ok":true}' })
          : route.continue();
      const unreadable = () =>
        visible(c.page, c.page.locator('#status[data-kind="error"]', { hasText: "could not be read" }), "an error about the answer");
      const accept = (dialog) => dialog.accept();
      await c.page.route("**/api/notes/*", deleteAnsweredByOther);
      await c.page.route("**/api/sessions/current", deleteAnsweredByOther);
      c.page.on("dialog", accept);
      try {
        await c.page.evaluate(() => { document.getElementById("status").textContent = ""; });
        await cNote(c.page, `Filler 1 ${run}`).locator('button[data-action="delete"]').click();
        await unreadable();
        if ((await cNote(c.page, `Filler 1 ${run}`).count()) !== 1) throw new Error("the note left the list");
        await c.page.evaluate(() => { document.getElementById("status").textContent = ""; });
        await c.page.click("#signout");
        await unreadable();
        if (!(await c.page.locator("#signout").isVisible())) throw new Error("C was shown as signed out");
      } finally {
        c.page.off("dialog", accept);
        await c.page.unroute("**/api/notes/*", deleteAnsweredByOther);
        await c.page.unroute("**/api/sessions/current", deleteAnsweredByOther);
      }
      if ((await c.page.inputValue("#note-title")) !== `Through a proxy ${run}`) throw new Error("the editor lost the text");
    },
  );

  await step(
    "C clicks Edit on a note while the editor holds unsaved text",
    "a question first; saying no keeps the text",
    async () => {
      const asked = [];
      const answerNo = (dialog) => {
        asked.push(dialog.message());
        return dialog.dismiss();
      };
      c.page.on("dialog", answerNo);
      try {
        await cNote(c.page, `Filler 1 ${run}`).locator('button[data-action="edit"]').click();
        await c.page.waitForTimeout(200);
      } finally {
        c.page.off("dialog", answerNo);
      }
      if (asked.length !== 1) throw new Error(`${asked.length} questions asked`);
      if ((await c.page.inputValue("#note-title")) !== `Through a proxy ${run}`) throw new Error("the editor lost the text");
    },
  );

  await step(
    "C signs out, then follows a link off the page, with unsaved text in the editor",
    "a question each time; saying no keeps C signed in, on the page, with the text",
    async () => {
      const asked = [];
      const answerNo = (dialog) => {
        asked.push(dialog.type());
        return dialog.dismiss();
      };
      c.page.on("dialog", answerNo);
      try {
        await c.page.click("#signout");
        await c.page.waitForTimeout(200);
        await c.page.click(".brand");
        await c.page.waitForTimeout(500);
      } finally {
        c.page.off("dialog", answerNo);
      }
      if (asked.join(", ") !== "confirm, beforeunload") throw new Error(`asked: ${asked.join(", ") || "nothing"}`);
      if (!(await c.page.locator("#signout").isVisible())) throw new Error("C was signed out");
      if ((await c.page.inputValue("#note-title")) !== `Through a proxy ${run}`) throw new Error("the editor lost the text");
    },
  );

  await step(
    "C publishes the note open in the editor, then saves the editor",
    "the changes saved (publishing from this page is no change made elsewhere)",
    async () => {
      const filler = cNote(c.page, `Filler 2 ${run}`);
      c.page.once("dialog", (dialog) => dialog.accept());
      await filler.locator('button[data-action="edit"]').click();
      await c.page.locator("#note-cancel:visible").waitFor();
      await c.page.fill("#note-body", `Edited while published (${run}).`);
      await filler.locator('button[data-action="publish"]').click();
      await visible(c.page, filler.locator('[data-testid="note-state"]', { hasText: "Published" }), "the note Published");
      await c.page.click("#note-save");
      await c.page.locator("#status", { hasText: /Changes saved|changed in another tab/ }).waitFor();
      const said = await statusText(c.page);
      if (!said.includes("Changes saved.")) throw new Error(`the page says: "${said}"`);
    },
  );

  await step(
    "C signs out in a second tab and signs up there as another account, with a draft in the first",
    "the first tab follows at once: signed out, then the new account (a note written there is listed where it is saved); signing in as A gives A's draft back",
    async () => {
      const otherEmail = `user-${run}-d@example.com`;
      const draft = `A's draft ${run}`;
      await c.page.fill("#note-title", draft);
      const second = await c.context.newPage();
      try {
        await second.goto(`${BASE_URL}/`);
        await visible(second, second.locator("#signout"), "the sign-out button in the second tab");
        await second.click("#signout");
        const followed = (locator) => locator.waitFor({ timeout: 3000 }).then(() => true, () => false);
        const signedOut = await followed(c.page.locator("#signin-form:visible"));
        await second.fill("#signup-email", otherEmail);
        await second.fill("#signup-password", PASSWORD);
        await second.click("#signup-submit");
        await visible(second, second.locator("#note-form"), "the editor in the second tab");
        const switched = await followed(c.page.locator("#signed-in-as", { hasText: otherEmail }));
        const shown = await c.page.textContent("#signed-in-as");
        const shownDraft = switched && (await c.page.inputValue("#note-title")) !== "";
        // Whatever the first tab shows, a note written there is saved for the session's account.
        const written = `Written in the first tab ${run}`;
        await c.page.fill("#note-title", written);
        await c.page.click("#note-save");
        await visible(c.page, cNote(c.page, written), "the new note in the first tab's list");
        const listed = await (await c.context.request.get(`${BASE_URL}/api/notes`)).json();
        const savedFor = listed.notes?.some((note) => note.title === written) ? otherEmail : "another account";
        if (savedFor !== shown) throw new Error(`the first tab shows ${shown}, and the note written there was saved for ${savedFor}`);
        if (!signedOut || !switched) throw new Error(`the first tab did not follow (signed out: ${signedOut}, switched: ${switched})`);
        if (shownDraft) throw new Error("A's draft was shown to the other account");
        const gone = await c.context.request.delete(`${BASE_URL}/api/me`, { headers: { "x-edgestack-client": "1" }, data: { password: PASSWORD } });
        if (gone.status() !== 204) throw new Error(`deleting the other account answered ${gone.status()}`);
        await second.reload();
        await visible(second, second.locator("#signin-form"), "the sign-in form in the second tab");
        await second.fill("#signin-email", email);
        await second.fill("#signin-password", PASSWORD);
        await second.click("#signin-submit");
        await visible(c.page, c.page.locator("#signed-in-as", { hasText: email }), `"${email}" in the first tab again`);
        if ((await c.page.inputValue("#note-title")) !== draft) throw new Error("A's draft did not come back");
      } finally {
        await second.close();
      }
    },
  );

  await step(
    "C refreshes the feed while its Load more is under way",
    "Load more usable once both have answered (the refresh's answer last), not left disabled",
    async () => {
      // A second page of the feed whatever else is published (deleted with the account).
      for (let n = 1; n <= 21; n += 1) {
        const response = await c.context.request.post(`${BASE_URL}/api/notes`, {
          headers: { "x-edgestack-client": "1" },
          data: { title: `Public filler ${n} ${run}`, published: true },
        });
        if (response.status() !== 201) throw new Error(`creating public note ${n} answered ${response.status()}`);
      }
      await c.page.goto(`${BASE_URL}/#feed`);
      await visible(c.page, c.page.locator("#feed-more"), "Load more");
      const isFirstPage = (url) => !new URL(url).searchParams.has("cursor");
      // Load more's answer comes first, the refresh's after it, each while the other is under way.
      const delay = (route) => {
        setTimeout(() => route.continue().catch(() => {}), isFirstPage(route.request().url()) ? 1000 : 500);
      };
      await c.page.route("**/api/public/notes?*", delay);
      try {
        const refreshed = c.page.waitForResponse((response) => response.url().includes("/api/public/notes?") && isFirstPage(response.url()));
        await c.page.click("#feed-more");
        await c.page.click("#feed-refresh");
        await refreshed;
        await c.page.locator('#feed-list:not([aria-busy="true"])').waitFor();
      } finally {
        await c.page.unroute("**/api/public/notes?*", delay);
      }
      await visible(c.page, c.page.locator("#feed-more"), "Load more after the refresh");
      if (await c.page.locator("#feed-more").isDisabled()) throw new Error("Load more is left disabled");
    },
  );

  await step("C deletes the account", "204 (runs leave no accounts behind)", async () => {
    const response = await c.context.request.delete(`${BASE_URL}/api/me`, {
      headers: { "x-edgestack-client": "1" },
      data: { password: PASSWORD },
    });
    if (response.status() !== 204) throw new Error(`DELETE /api/me answered ${response.status()}`);
  });

  await step("B pastes a 130-character password into the sign-up form", "all 130 kept (the API, not the field, refuses it)", async () => {
    await b.page.goto(`${BASE_URL}/`);
    await b.page.locator("#signup-submit:enabled").waitFor();
    await b.page.focus("#signup-password");
    await b.page.keyboard.insertText("p".repeat(130));
    const kept = (await b.page.inputValue("#signup-password")).length;
    if (kept !== 130) throw new Error(`the field kept ${kept}: an account would get a password its owner never typed`);
  });

  await step(
    "B signs in with a wrong password until the account's attempts are paused",
    "each refusal as a sentence of its own (the API's clause, capitalized and ended), the wait said once",
    async () => {
      await b.page.goto(`${BASE_URL}/`);
      await b.page.locator("#signin-submit:enabled").waitFor();
      await b.page.fill("#signin-email", `nobody-${run}@example.com`);
      const said = [];
      // Five untrusted attempts at once, then a pause (docs/api.md, sign-in limits).
      for (let attempt = 1; attempt <= 6; attempt += 1) {
        await b.page.fill("#signin-password", `wrong password ${attempt}`);
        const answered = b.page.waitForResponse((response) => response.url().endsWith("/api/sessions"));
        await b.page.press("#signin-password", "Enter");
        await answered;
        await b.page.locator("#signin-submit:enabled").waitFor();
        said.push(await statusText(b.page));
      }
      const [refused, paused] = [said[0], said[5]];
      if (refused !== "The email or the password is wrong.") throw new Error(`a wrong password says "${refused}"`);
      if (!/^Too many sign-in attempts for this account; wait \d+ s, or sign in on a device you have signed in on before\.$/.test(paused)) {
        throw new Error(`the pause says "${paused}"`);
      }
    },
  );

  await step("B opens the public page of /note?id=. (a path, not an id)", "the not-found message", async () => {
    await b.page.goto(`${BASE_URL}/note?id=.`);
    await b.page.locator("#public-note:visible, #note-missing:visible, #status:not(:empty)").first().waitFor();
    if (!(await b.page.locator("#note-missing").isVisible())) throw new Error(`the page says: "${await statusText(b.page)}"`);
  });
}

async function main() {
  await mkdir(ARTIFACTS_DIR, { recursive: true });
  log(`browser: ${BASE_URL} as ${email}, screenshots in ${ARTIFACTS_DIR}`);
  let failure = null;
  let browser = null;
  try {
    await checkReachable();
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      // Playwright turns the back/forward cache off; a user's browser has it on, and a page it
      // restores must not show what the server would no longer give.
      ignoreDefaultArgs: ["--disable-back-forward-cache"],
      args: [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ],
    });
    await scenario(browser);
  } catch (error) {
    failure = error;
    log(`  FAIL ${error instanceof StepFailure ? error.message : error?.stack ?? error}`);
    for (const user of contexts) {
      try {
        log(`       ${user.name} failure screenshot: ${await screenshot(user.page, `failure-${user.name}`)}`);
        await writeFile(path.join(ARTIFACTS_DIR, `failure-${user.name}.html`), await user.page.content());
      } catch {
        // The page may be gone; the message above is what matters.
      }
      for (const problem of user.problems) log(`       ${user.name}: ${problem}`);
    }
  } finally {
    await browser?.close().catch(() => {});
  }
  log(`browser: ${failure ? 0 : 1} passed, ${failure ? 1 : 0} failed`);
  process.exitCode = failure ? 1 : 0;
}

await main();
