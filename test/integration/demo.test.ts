// The chat demo (`npm run demo`, examples/chat) as a person would use it: two
// people in two browser tabs see each other arrive, talk, and one who reloads
// finds the conversation again from history.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../support/browser.js";
import { track } from "../support/children.js";
import { REPO_ROOT } from "../support/crier.js";

let browser: Browser;
let demoUrl = "";
let stopDemo: () => Promise<void> = async () => {};

before(async () => {
  const child = spawn(process.execPath, ["--import", "tsx", "examples/chat/serve.ts", "--port", "0"], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  track(child);
  stopDemo = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    await exited;
  };
  let output = "";
  demoUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo did not start within 30 s:\n${output}`)), 30_000);
    const read = (chunk: Buffer): void => {
      output += chunk.toString("utf8");
      const match = /crier chat demo on (http:\/\/\S+\/)/.exec(output);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited (${code}) before it listened:\n${output}`));
    });
  });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await stopDemo();
});

async function open(name: string): Promise<Page> {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${demoUrl}?room=chat:demo-test&name=${name}`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
  assert.deepEqual(errors, []);
  return page;
}

test("two people chat in the demo, see who is here, and the conversation survives a reload", async () => {
  const ann = await open("ann");
  const bob = await open("bob");
  // Bob saw Ann in the presence list when he came; Ann saw Bob's join.
  await bob.locator("#members li", { hasText: "ann" }).waitFor();
  await ann.locator("#members li", { hasText: "bob" }).waitFor();

  await ann.fill("#text", "hello bob");
  await ann.press("#text", "Enter");
  await bob.locator("#log li", { hasText: "hello bob" }).waitFor();
  assert.equal(await bob.locator("#log li", { hasText: "hello bob" }).locator(".who").textContent(), "ann");

  await bob.fill("#text", "hi ann");
  await bob.click("#send button");
  await ann.locator("#log li", { hasText: "hi ann" }).waitFor();

  // Bob reloads: a new connection, the room's history, in order; Ann sees him leave and come back.
  await bob.reload();
  await bob.waitForSelector("body[data-ready=true]", { timeout: 15_000 });
  const lines = await bob.locator("#log li.line").allTextContents();
  assert.deepEqual(lines, ["annhello bob", "bobhi ann"]);
  // The old tab's leave and the new tab's join may come in either order: wait for the list to settle at two.
  await ann.waitForFunction('document.querySelectorAll("#members li").length === 2', undefined, { timeout: 10_000 });
  assert.deepEqual((await ann.locator("#members li").allTextContents()).sort(), ["ann", "bob"]);
  await ann.close();
  await bob.close();
});
