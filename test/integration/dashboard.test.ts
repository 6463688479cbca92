// The operator's console (GET /dashboard) in headless Chromium against two real
// crier instances on one real Redis, with traffic flowing: both instances and
// their charts appear and move, the busiest room lists its members, the room
// inspector's publish reaches a subscribed client, disconnecting a user from
// the page closes its connections on both instances with the chosen code, and
// a wrong key is refused. Any console error or page error fails the test.
// Screenshots (desktop and narrow) land in .tmp/dashboard/.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../support/browser.js";
import { type ConfigFile, type CrierInstance, REPO_ROOT, startCrier, writeConfig } from "../support/crier.js";
import { type RedisProcess, startRedis } from "../support/redis.js";
import { JWT_SECRET, token } from "../support/tokens.js";
import { waitUntil } from "../support/wait.js";
import { type Closed, TestClient } from "../support/ws-client.js";

const SHOTS = join(REPO_ROOT, ".tmp", "dashboard");
const BUSY = "chat:busy";

let redis: RedisProcess;
let config: ConfigFile;
let a: CrierInstance;
let b: CrierInstance;
let browser: Browser;
const clients: TestClient[] = [];
let traffic: NodeJS.Timeout | undefined;

async function connectAs(instance: CrierInstance, user: string): Promise<TestClient> {
  const client = await TestClient.connect(instance.url, { token: await token({ sub: user }) });
  clients.push(client);
  client.ws.on("message", (data) => {
    if (String(data) === '{"op":"ping"}') client.send({ op: "pong" });
  });
  return client;
}

async function subscribe(client: TestClient, room: string): Promise<void> {
  const reply = await client.call({ op: "subscribe", room });
  assert.equal(reply.op, "subscribed", JSON.stringify(reply));
}

/** A page that records console errors and page errors, for the test to assert there were none. */
async function openConsole(width: number, height: number): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width, height } });
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(error.message));
  await page.goto(`${a.httpUrl}/dashboard`);
  return { page, errors };
}

async function signIn(page: Page, key: string): Promise<void> {
  await page.locator("#key").waitFor();
  await page.getByLabel("HTTP API key").fill(key);
  await page.getByRole("button", { name: "Show the cluster" }).click();
}

/** The latest value of each series of a chart, as the page publishes them on the figure. */
async function series(page: Page, chart: string): Promise<Record<string, number | null>> {
  const text = await page.locator(`figure[data-chart="${chart}"]`).getAttribute("data-series");
  return JSON.parse(text ?? "{}") as Record<string, number | null>;
}

// Conditions are checked here, on what locators read: the page's CSP forbids
// the string evaluation that in-page wait functions would need.
async function waitForSeries(
  page: Page,
  chart: string,
  what: string,
  check: (values: Record<string, number | null>) => boolean,
): Promise<void> {
  await waitUntil(`${chart}: ${what}`, async () => check(await series(page, chart)), 15_000);
}

async function waitForRows(page: Page, table: string, count: number): Promise<void> {
  await waitUntil(
    `${count} rows in ${table}`,
    async () => (await page.locator(`${table} tbody tr`).count()) === count,
    15_000,
  );
}

async function points(page: Page, chart: string): Promise<number> {
  return Number(await page.locator(`figure[data-chart="${chart}"]`).getAttribute("data-points"));
}

before(async () => {
  await mkdir(SHOTS, { recursive: true });
  redis = await startRedis();
  config = await writeConfig({
    cluster: { heartbeat: 0.5, nodeTimeout: 3 },
    namespaces: { chat: { history: { size: 50, ttl: "10m" }, presence: true } },
  });
  const start = (id: string) =>
    startCrier({ args: ["--config", config.path, "--redis", redis.url, "--node-id", id, "--jwt-secret", JWT_SECRET] });
  [a, b] = await Promise.all([start("a"), start("b")]);
  browser = await launchChromium();

  // The busiest room has members on both instances; a quieter one has one.
  const members = [await connectAs(a, "alice"), await connectAs(b, "bob"), await connectAs(a, "carol")];
  for (const member of members) await subscribe(member, BUSY);
  await subscribe(await connectAs(b, "quinn"), "chat:quiet");
  // Traffic: a publication from each instance every 100 ms, acknowledged or not.
  // Publishers in the room ("publish": "subscribers" by default), one on each instance.
  const publishers = [await connectAs(a, "pub-a"), await connectAs(b, "pub-b")];
  for (const publisher of publishers) await subscribe(publisher, BUSY);
  let n = 0;
  traffic = setInterval(() => {
    for (const publisher of publishers) publisher.send({ op: "publish", room: BUSY, data: { n: n++ } });
  }, 100);
  // One auth failure on b, for the warnings.
  const refused = await TestClient.open(b.url);
  refused.send({ op: "connect", token: "not-a-jwt" });
  await refused.closed;
});

after(async () => {
  clearInterval(traffic);
  for (const client of clients) client.ws.terminate();
  await browser?.close();
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
  await config?.remove();
});

describe("the operator's console in headless Chromium, two instances on Redis", () => {
  test("a wrong key is refused, the key is never in the URL, and the right one shows the cluster", async () => {
    const { page, errors } = await openConsole(1280, 900);
    try {
      await signIn(page, "not-the-key");
      await page.locator("#error", { hasText: "that key was refused" }).waitFor();
      assert.equal(await page.locator("#console").isHidden(), true, "nothing of the cluster is shown");
      assert.equal(
        await page.evaluate('sessionStorage.getItem("crier-dashboard-key")'),
        null,
        "a refused key is forgotten",
      );
      await signIn(page, a.apiKey);
      await page.locator('#nodes tbody tr[data-node="b"]').waitFor();
      assert.doesNotMatch(page.url(), new RegExp(a.apiKey), "the key is not in the URL");
      // The browser itself reports the refused request (HTTP 401) as a console error; nothing else may appear.
      assert.deepEqual(
        errors.filter((text) => !/status of 401/.test(text)),
        [],
      );
    } finally {
      await page.close();
    }
  });

  test("both instances and their charts appear and move; the warnings show the auth failure on b", async () => {
    const { page, errors } = await openConsole(1280, 900);
    try {
      await signIn(page, a.apiKey);
      for (const id of ["a", "b"]) await page.locator(`#nodes tbody tr[data-node="${id}"]`).waitFor();
      await page.locator("#count", { hasText: "2 instances" }).waitFor();
      for (const chart of [
        "connections",
        "messages-in",
        "messages-out",
        "deliveries",
        "latency",
        "backplane",
        "warnings",
      ]) {
        await waitForSeries(page, chart, "a series for a and for b", (values) => "a" in values && "b" in values);
        assert.equal(await page.locator(`figure[data-chart="${chart}"] canvas`).count(), 1, `${chart} is drawn`);
      }
      const before = await points(page, "messages-in");
      // New samples arrive every second and the page asks every two: the charts move.
      await waitUntil("new samples", async () => (await points(page, "messages-in")) > before, 15_000);
      const connections = await series(page, "connections");
      assert.equal(connections.a, 3, "alice, carol and pub-a");
      assert.equal(connections.b, 3, "bob, quinn and pub-b");
      assert.equal(connections.cluster, 6);
      await waitForSeries(page, "messages-in", "both publish", (values) => (values.a ?? 0) > 0 && (values.b ?? 0) > 0);
      const deliveries = await series(page, "deliveries");
      assert.ok((deliveries.cluster ?? 0) > 0, `deliveries flow: ${JSON.stringify(deliveries)}`);
      const backplane = await series(page, "backplane");
      assert.deepEqual([backplane.a, backplane.b], [1, 1], "both reach Redis");

      await page.locator('#warning-counts li[data-kind="auth_failed"]', { hasText: "auth failures: 1" }).waitFor();
      const warning = page.locator("#warning-list tbody tr", { hasText: "auth failures" });
      assert.equal(await warning.locator("td").nth(1).textContent(), "b", "the instance that refused it");

      await page.screenshot({ path: join(SHOTS, "desktop.png"), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test("the busiest room lists its members; the inspector's publish reaches a subscribed client", async () => {
    const { page, errors } = await openConsole(1280, 900);
    const [alice, , carol] = clients;
    assert.ok(alice !== undefined && carol !== undefined);
    try {
      await signIn(page, a.apiKey);
      const first = page.locator("#rooms tbody tr").first();
      await first.locator("td", { hasText: BUSY }).waitFor();
      assert.equal(await first.locator("td").nth(1).textContent(), "5", "alice, bob, carol and the publishers");
      await page.getByLabel("Search rooms").fill("quiet");
      await page.locator("#rooms tbody tr").first().locator("td", { hasText: "chat:quiet" }).waitFor();
      assert.equal(await page.locator("#rooms tbody tr").count(), 1, "the search keeps only matching rooms");
      await page.getByLabel("Search rooms").fill("");
      await page.getByRole("button", { name: `Inspect room ${BUSY}` }).click();

      await waitForRows(page, "#members", 5);
      const users = await page.locator("#members tbody td:nth-child(1)").allTextContents();
      const nodes = await page.locator("#members tbody td:nth-child(3)").allTextContents();
      assert.deepEqual(users.map((user, i) => `${user}@${nodes[i]}`).sort(), [
        "alice@a",
        "bob@b",
        "carol@a",
        "pub-a@a",
        "pub-b@b",
      ]);
      assert.equal(await page.locator("#room-title:focus").count(), 1, "focus moves to the inspector");
      await page.locator("#presence", { hasText: "alice" }).waitFor();
      await page.locator("#history li").first().waitFor();

      const data = { from: "console", text: "hello alice" };
      await page.getByLabel("Publish to this room (JSON)").fill(JSON.stringify(data));
      await page.getByRole("button", { name: "Publish" }).click();
      await alice.seen(
        (frame) => frame.op === "message" && frame.room === BUSY && JSON.stringify(frame.data) === JSON.stringify(data),
        "the console's publication",
      );
      await page.locator("#publish-result", { hasText: `published to ${BUSY} at offset` }).waitFor();

      await page.getByLabel("Publish to this room (JSON)").fill("{not json");
      await page.getByRole("button", { name: "Publish" }).click();
      await page.locator("#publish-result", { hasText: "That is not JSON" }).waitFor();

      await page.getByRole("button", { name: `Unsubscribe user carol from ${BUSY}` }).click();
      await carol.seen((frame) => frame.op === "unsubscribed" && frame.room === BUSY, "carol's unsubscribed");
      await waitForRows(page, "#members", 4);
      await page.screenshot({ path: join(SHOTS, "desktop-room.png"), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test("disconnecting a user from the page closes its connections on both instances with the chosen code", async () => {
    const onA = await connectAs(a, "dave");
    const onB = await connectAs(b, "dave");
    const { page, errors } = await openConsole(1280, 900);
    try {
      await signIn(page, a.apiKey);
      await page.getByLabel("User id").fill("dave");
      await page.getByRole("button", { name: "Show connections" }).click();
      await waitForRows(page, "#user-connections", 2);
      const instances = await page.locator("#user-connections tbody tr td:nth-child(2)").allTextContents();
      assert.deepEqual(instances.sort(), ["a", "b"]);
      const transports = await page.locator("#user-connections tbody tr td:nth-child(3)").allTextContents();
      assert.deepEqual(transports, ["websocket crier.v1.json", "websocket crier.v1.json"]);

      await page.getByLabel("Close code (4000–4999)").fill("4321");
      await page.getByRole("button", { name: "Disconnect all of this user's connections" }).click();
      const closed: Closed[] = await Promise.all([onA.closed, onB.closed]);
      assert.deepEqual(
        closed.map((c) => c.code),
        [4321, 4321],
      );
      assert.equal(closed[0]?.reason, "disconnected by an operator");
      await page.locator("#user-empty", { hasText: "No open connection." }).waitFor();
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });

  test("one connection can be closed alone; on a narrow screen nothing runs off the side", async () => {
    const keep = await connectAs(a, "erin");
    const drop = await connectAs(b, "erin");
    const { page, errors } = await openConsole(390, 844);
    try {
      await signIn(page, a.apiKey);
      await page.getByLabel("User id").fill("erin");
      await page.getByRole("button", { name: "Show connections" }).click();
      await waitForRows(page, "#user-connections", 2);
      const dropId =
        (await page
          .locator('#user-connections tbody tr td:nth-child(2):text-is("b")')
          .locator("xpath=..")
          .getAttribute("data-client")) ?? "";
      assert.notEqual(dropId, "");
      await page.getByRole("button", { name: `Disconnect client ${dropId}` }).click();
      assert.equal((await drop.closed).code, 4004, "the default code");
      await waitForRows(page, "#user-connections", 1);
      assert.equal(keep.ws.readyState, keep.ws.OPEN, "the other connection stays");

      // Charts drawn, then the page may not be wider than the screen.
      await waitUntil("7 charts drawn", async () => (await page.locator("figure canvas").count()) === 7, 15_000);
      const overflow = Number(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"));
      assert.ok(overflow <= 0, `the page is ${overflow} px wider than a 390 px screen`);
      await page.screenshot({ path: join(SHOTS, "narrow.png"), fullPage: true });
      assert.deepEqual(errors, []);
    } finally {
      await page.close();
    }
  });
});
