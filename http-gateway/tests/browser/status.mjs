// The gateway's status page (GET /) in headless Chromium: it must render the configured
// producer and consumer, the consumer's backlog (every message produced, nobody consumed) in
// its row and per queue, refresh itself from /status.json, and log no script error.
//
//   node status.mjs --gw URL --producer P --consumer C --backlog N [--screenshot FILE]
//
// Exit 0 when all of that holds; the reasons otherwise. scripts/browser-test.sh starts the
// gateway and produces the messages.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
    process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
for (const k of ["gw", "producer", "consumer", "backlog"]) {
    if (!args[k]) {
        console.error(`status.mjs: --${k} is required`);
        process.exit(2);
    }
}
const backlog = Number(args.backlog);
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "rmq-status-test-"));
const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-sync"],
});
const problems = [];
const scriptErrors = [];
try {
    const page = await context.newPage();
    page.on("console", (m) => {
        if (m.type() === "error") scriptErrors.push(`console error: ${m.text()}`);
    });
    page.on("pageerror", (e) => scriptErrors.push(`pageerror: ${e.message}`));
    const external = [];
    page.on("request", (r) => {
        if (!r.url().startsWith(args.gw)) external.push(r.url());
    });
    await page.goto(`${args.gw}/`);
    // The observer reads the broker offsets every 2 s and the page refreshes every 3 s.
    const row = `#consumers tbody tr[data-consumer="${args.consumer}"]`;
    try {
        await page.waitForFunction(
            ([sel, want]) => {
                const tr = document.querySelector(sel);
                return tr && Number(tr.children[4].textContent) === want && (window.__statusRenders || 0) >= 2;
            },
            [row, backlog],
            { timeout: 30_000, polling: 200 },
        );
    } catch (e) {
        problems.push(`the consumer's row with backlog ${backlog} did not appear: ${await page.locator("body").innerText()}`);
    }
    const seen = await page.evaluate(([consumer, producer]) => {
        const tr = document.querySelector(`#consumers tbody tr[data-consumer="${consumer}"]`);
        const section = document.querySelector(`#queues section[data-consumer="${consumer}"]`);
        const queueRows = section ? [...section.querySelectorAll("tbody tr")] : [];
        const prod = [...document.querySelectorAll("#producers tbody tr")].find((r) => r.children[0].textContent === producer);
        return {
            row: tr ? [...tr.children].map((td) => td.textContent) : null,
            queues: queueRows.map((r) => [...r.children].map((td) => td.textContent)),
            producer: prod ? [...prod.children].map((td) => td.textContent) : null,
            ready: document.getElementById("ready").textContent,
            renders: window.__statusRenders || 0,
            text: document.body.innerText,
        };
    }, [args.consumer, args.producer]);
    if (!seen.row) problems.push("no row for the consumer");
    if (seen.queues.length === 0) problems.push("no queue rows for the consumer");
    const queueBacklog = seen.queues.reduce((s, q) => s + (Number(q[5]) || 0), 0);
    if (queueBacklog !== backlog) problems.push(`the queues' backlogs add up to ${queueBacklog}, not ${backlog}`);
    if (!seen.producer || Number(seen.producer[3]) !== backlog) {
        problems.push(`the producer's row should show ${backlog} sent: ${JSON.stringify(seen.producer)}`);
    }
    if (external.length) problems.push(`requests outside the gateway: ${JSON.stringify(external)}`);
    if (args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
    console.log(`status page: consumer row ${JSON.stringify(seen.row)}; ${seen.queues.length} queues; ` +
        `producer row ${JSON.stringify(seen.producer)}; ready: ${seen.ready}; ${seen.renders} renders`);
    if (process.env.STATUS_PAGE_TEXT) console.log(seen.text);
} finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
}
problems.push(...scriptErrors);
if (problems.length) {
    for (const p of problems) console.error(`FAIL: ${p}`);
    process.exit(1);
}
console.log("status page test passed");
