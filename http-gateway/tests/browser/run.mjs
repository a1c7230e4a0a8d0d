// Serves page.html (and jQuery) from one origin and runs it in headless Chromium against the
// gateway on another: once against a gateway with CORS for this page's origin (every message
// produced must come back to the clustering and the broadcast consumer, exactly once each), once
// against one without CORS (the browser must hide the answer: status 0).
//
//   node run.mjs --page-port P --cors-gw URL --plain-gw URL --topic T --token TOKEN [--n 10]
//
// Exit 0 when both hold; the reasons otherwise. scripts/browser-test.sh starts the gateways.
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
    process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
for (const k of ["page-port", "cors-gw", "plain-gw", "topic", "token"]) {
    if (!args[k]) {
        console.error(`run.mjs: --${k} is required`);
        process.exit(2);
    }
}
const n = parseInt(args.n || "10", 10);
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";

const files = {
    "/page.html": [path.join(here, "page.html"), "text/html; charset=utf-8"],
    "/jquery.js": [path.join(here, "node_modules/jquery/dist/jquery.min.js"), "text/javascript"],
};
const server = http.createServer((req, res) => {
    const f = files[new URL(req.url, "http://x").pathname];
    if (!f) {
        res.writeHead(404).end();
        return;
    }
    res.writeHead(200, { "content-type": f[1] });
    fs.createReadStream(f[0]).pipe(res);
});
await new Promise((ok, fail) => server.listen(Number(args["page-port"]), "127.0.0.1", ok).on("error", fail));
const pageOrigin = `http://127.0.0.1:${args["page-port"]}`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "rmq-browser-test-"));
const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ],
});

async function runPage(gw, timeoutMs) {
    const page = await context.newPage();
    const consoleLines = [];
    page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
    const q = new URLSearchParams({ gw, topic: args.topic, n: String(n), token: args.token });
    await page.goto(`${pageOrigin}/page.html?${q}`);
    try {
        await page.waitForFunction(() => window.__result !== undefined, null, { timeout: timeoutMs, polling: 200 });
    } catch (e) {
        return { ok: false, phase: "timeout", console: consoleLines.slice(-30) };
    }
    const result = await page.evaluate(() => window.__result);
    result.console = consoleLines.slice(-30);
    await page.close();
    return result;
}

const problems = [];
try {
    // 1. CORS on: the guide's clients work from another origin.
    const r = await runPage(args["cors-gw"], 240_000);
    const expected = 2 * n;
    if (!r.ok) {
        problems.push(`with CORS: the page failed: ${JSON.stringify(r)}`);
    } else {
        if (r.produced.length !== expected) problems.push(`produced ${r.produced.length} of ${expected}`);
        for (const kind of ["clustering", "broadcast", "cookie"]) {
            const got = r[kind];
            const missing = r.produced.filter((m) => !got[m]);
            const twice = r.produced.filter((m) => got[m] > 1);
            const extra = Object.keys(got).filter((m) => !r.produced.includes(m));
            if (missing.length) problems.push(`${kind}: missing ${JSON.stringify(missing)}`);
            if (twice.length) problems.push(`${kind}: delivered more than once ${JSON.stringify(twice)}`);
            if (extra.length) problems.push(`${kind}: unexpected ${JSON.stringify(extra)}`);
            console.log(`with CORS: ${kind} consumer read ${Object.keys(got).length} of ${expected} messages`);
        }
        if (!(r.cookieQueues > 0) || r.cookieBacklog !== 0) {
            problems.push(`useCookie: ${r.cookieBacklog} messages left unacked on ${r.cookieQueues} queues`);
        } else {
            console.log(`with CORS: useCookie acked everything (backlog 0 on ${r.cookieQueues} queues)`);
        }
        if (r.config !== 200) problems.push(`consumer config call (Authorization, JSON): ${r.config}`);
        if (r.errors.length) problems.push(`errors on the way: ${JSON.stringify(r.errors)}`);
        console.log(`with CORS: produced ${r.produced.length} (${n} single, ${n} batch); config call ${r.config}`);
    }
    // 2. CORS off: the same page cannot read a single answer.
    const f = await runPage(args["plain-gw"], 60_000);
    const blocked = f.console.some((l) => l.includes("blocked by CORS policy"));
    if (f.ok || f.phase !== "produce" || f.status !== 0 || f.textStatus !== "error" || !blocked) {
        problems.push(`without CORS the page should fail producing with status 0: ${JSON.stringify(f)}`);
    } else {
        console.log(`without CORS: produce failed with status ${f.status} (${f.textStatus}; "blocked by CORS policy"), as it must`);
    }
} finally {
    await context.close();
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
}
if (problems.length) {
    for (const p of problems) console.error(`FAIL: ${p}`);
    process.exit(1);
}
console.log("browser test passed");
