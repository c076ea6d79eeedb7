import assert from "node:assert/strict";
import { stat } from "node:fs/promises";
import { request } from "node:http";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Service } from "../src/server/serve.ts";
import { serve } from "../src/server/serve.ts";
import { call, connectWs, type Dirs, makeDirs, start } from "./support/service.ts";

let dirs: Dirs;
let svc: Service;
const WEBUI = "http://127.0.0.1:7860";

before(async () => {
  dirs = await makeDirs();
  svc = await start(dirs, { webuiUrl: WEBUI });
});
after(() => svc.close());

test("the token is 64 hex, stored with mode 0600, and the same after a restart", async () => {
  assert.match(svc.token, /^[0-9a-f]{64}$/);
  const st = await stat(join(dirs.dataDir, "token"));
  assert.equal(st.mode & 0o777, 0o600);
  const again = await start(dirs);
  assert.equal(again.token, svc.token);
  await again.close();
});

test("mutating requests without or with a wrong token are refused with 401; reads are open", async () => {
  const body = { path: "tiny-b.safetensors", name: "x" };
  assert.equal((await call({ url: svc.url }, "POST", "/api/lora/rename", body)).status, 401);
  assert.equal(
    (await call({ url: svc.url, token: "0".repeat(64) }, "POST", "/api/lora/rename", body)).status,
    401,
  );
  assert.equal(
    (await call({ url: svc.url }, "POST", "/api/datasets", { name: "d" }, { authorization: "Basic abc" }))
      .status,
    401,
  );
  assert.equal(
    (
      await call({ url: svc.url }, "PUT", "/api/lora/user-metadata", {
        path: "tiny-b.safetensors",
        metadata: {},
      })
    ).status,
    401,
  );
  // the files did not move
  await stat(join(dirs.loraDir, "tiny-b.safetensors"));
  const ok = await call(
    { url: svc.url },
    "POST",
    "/api/datasets",
    { name: "d1" },
    { "x-lora-studio-token": svc.token },
  );
  assert.equal(ok.status, 201);
  assert.equal((await call({ url: svc.url }, "GET", "/api/lora")).status, 200);
});

test("a foreign Host header (DNS rebinding) is refused", async () => {
  // fetch cannot set Host (a forbidden header), so a raw http request stands in for the rebound browser.
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${svc.url}/api/lora`, { headers: { host: "evil.example:7870" } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
  assert.equal(status, 403);
});

test("CORS: the WebUI's origin is answered, another origin is not and cannot mutate", async () => {
  const pre = await fetch(`${svc.url}/api/lora/rename`, { method: "OPTIONS", headers: { origin: WEBUI } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get("access-control-allow-origin"), WEBUI);
  const evil = await call(
    { url: svc.url, token: svc.token },
    "POST",
    "/api/datasets",
    { name: "e" },
    { origin: "http://evil.example" },
  );
  assert.equal(evil.status, 403);
});

test("websocket: missing token, wrong token and foreign origin are refused; token by query or first message works", async () => {
  await assert.rejects(
    connectWs(svc.url, { queryToken: "bad" }),
    (e: Error & { status?: number }) => e.status === 401,
  );
  await assert.rejects(
    connectWs(svc.url, { queryToken: svc.token, origin: "http://evil.example" }),
    (e: Error & { status?: number }) => e.status === 403,
  );

  const noToken = await connectWs(svc.url, {});
  noToken.send({ type: "subscribe", jobId: "x", since: 0 });
  const closed = await noToken.closed;
  assert.equal(closed.code, 4401);
  assert.equal(noToken.messages.length, 0);

  const wrong = await connectWs(svc.url, { token: "nope" });
  assert.equal((await wrong.closed).code, 4401);

  for (const c of [
    await connectWs(svc.url, { queryToken: svc.token }),
    await connectWs(svc.url, { token: svc.token }),
    await connectWs(svc.url, { token: svc.token, origin: WEBUI }),
    await connectWs(svc.url, { token: svc.token, origin: svc.url }),
  ]) {
    const hello = await c.waitFor((m) => m.type === "hello");
    assert.ok(Array.isArray(hello.jobs));
    c.ws.close();
  }
});

test("binding beyond loopback needs listen", async () => {
  await assert.rejects(
    serve({ port: 0, host: "0.0.0.0", dataDir: dirs.dataDir, loraDir: dirs.loraDir }),
    /--listen|listen/,
  );
});

test("the standalone page embeds the token only for a loopback Host; the UI bundle is served", async () => {
  const html = await (await fetch(`${svc.url}/`)).text();
  assert.ok(html.includes(svc.token));
  assert.match(html, /id="lora-studio-root"/);
  const asLocalhost = await new Promise<string>((resolve, reject) => {
    const req = request(`${svc.url}/`, { headers: { host: `localhost:${svc.port}` } }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => resolve(body));
    });
    req.on("error", reject);
    req.end();
  });
  assert.ok(asLocalhost.includes(svc.token));
  const js = await fetch(`${svc.url}/ui/lora-studio.js`);
  assert.equal(js.status, 200);
  assert.match(await js.text(), /lora-studio-app/);
});

test("with listen, a visit from a non-loopback address gets the page without the token", async (t) => {
  const ip = Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === "IPv4" && !i.internal)?.address;
  if (ip === undefined) return t.skip("no non-loopback IPv4 interface");
  const wide = await serve({
    port: 0,
    host: "0.0.0.0",
    listen: true,
    dataDir: dirs.dataDir,
    loraDir: dirs.loraDir,
  });
  try {
    const html = await (await fetch(`http://${ip}:${wide.port}/`)).text();
    assert.match(html, /"token":null/);
    assert.ok(!html.includes(wide.token));
    const r = await call({ url: `http://${ip}:${wide.port}` }, "POST", "/api/datasets", { name: "w" });
    assert.equal(r.status, 401);
  } finally {
    await wide.close();
  }
});
