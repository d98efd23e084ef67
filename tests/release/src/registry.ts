// A real local npm registry for the publish/install round trip: verdaccio on 127.0.0.1 and a free port,
// its storage in a temporary directory, dmasim's packages served only from what was published to it,
// every other package proxied from the public registry (zod, @types/node). `stop()` always ends it.
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { ROOT } from "./workspace.js";

export interface Registry {
  /** `http://127.0.0.1:<port>/` */
  readonly url: string;
  /** An .npmrc that points npm and pnpm at the registry with a publish token. */
  readonly npmrc: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => {
        if (addr !== null && typeof addr === "object") resolve(addr.port);
        else reject(new Error("no port"));
      });
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const hard = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(hard);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** Starts verdaccio with its files in `dir`; resolves once it answers /-/ping and a publisher is registered. */
export async function startRegistry(dir: string): Promise<Registry> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/`;
  const config = join(dir, "verdaccio.yaml");
  const local = "{ access: $all, publish: $authenticated, unpublish: $authenticated }";
  writeFileSync(
    config,
    [
      `storage: ${join(dir, "storage")}`,
      `auth: { htpasswd: { file: ${join(dir, "htpasswd")}, max_users: 10 } }`,
      "uplinks: { npmjs: { url: https://registry.npmjs.org/, timeout: 60s } }",
      "packages:",
      // No proxy for dmasim's own names: what is installed is what was published here, never a namesake.
      `  "@dmasim/*": ${local}`,
      `  "dmasim": ${local}`,
      '  "**": { access: $all, proxy: npmjs }',
      "max_body_size: 200mb",
      "log: { type: stdout, format: pretty, level: warn }",
      "",
    ].join("\n"),
  );
  const bin = join(ROOT, "tests/release/node_modules/verdaccio/bin/verdaccio");
  const child = spawn(process.execPath, [bin, "--config", config, "--listen", `127.0.0.1:${port}`], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (log += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (log += d));
  const onExit = (): void => {
    child.kill("SIGKILL");
  };
  process.once("exit", onExit);
  const stop = async (): Promise<void> => {
    process.removeListener("exit", onExit);
    await stopChild(child);
  };
  try {
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`verdaccio exited (${String(child.exitCode)}): ${log}`);
      const ok = await fetch(`${url}-/ping`).then((r) => r.ok, () => false);
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`verdaccio did not answer on ${url}: ${log}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    // npm's adduser, by hand: the token is what `npm publish` sends.
    const res = await fetch(`${url}-/user/org.couchdb.user:release`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "release", password: "release-check", type: "user", roles: [] }),
    });
    const body = (await res.json()) as { token?: string };
    if (body.token === undefined) throw new Error(`verdaccio refused the publisher: ${res.status} ${JSON.stringify(body)}`);
    const npmrc = join(dir, "npmrc");
    writeFileSync(npmrc, `registry=${url}\n//127.0.0.1:${port}/:_authToken=${body.token}\n`);
    return { url, npmrc, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
