// The worker pool: tasks run on real worker threads (the merge worker entry), task errors come back typed,
// and a worker that cannot start is reported as WorkerCrashError (which callers turn into an in-thread run).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { pathToFileURL } from "node:url";
import { mergeWorkerEntry, reviveMergeError } from "../src/merge/pool.ts";
import { WorkerCrashError, WorkerPool } from "../src/util/worker-pool.ts";

const tmp = mkdtempSync(join(tmpdir(), "worker-pool-test-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

test("tasks run on the workers; an unknown task is an error, not a crash", async () => {
  const pool = new WorkerPool(mergeWorkerEntry(), 2, reviveMergeError);
  try {
    const closed = await Promise.all([pool.run("closeFiles", {}), pool.run("closeFiles", {})]);
    assert.deepEqual(closed, [null, null]);
    await assert.rejects(
      pool.run("noSuchTask", {}),
      (e: unknown) =>
        e instanceof Error && /unknown task/.test(e.message) && !(e instanceof WorkerCrashError),
    );
  } finally {
    await pool.close();
  }
});

test("a worker whose entry fails to load rejects every task with WorkerCrashError", async () => {
  const entry = join(tmp, "broken-entry.ts");
  writeFileSync(entry, 'throw new Error("cannot start here");\n');
  const pool = new WorkerPool(pathToFileURL(entry), 1);
  try {
    await assert.rejects(pool.run("anything", {}), WorkerCrashError);
    await assert.rejects(pool.run("again", {}), WorkerCrashError);
  } finally {
    await pool.close();
  }
});
