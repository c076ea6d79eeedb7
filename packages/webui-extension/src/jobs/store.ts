/**
 * Jobs and their events, persisted in SQLite (better-sqlite3, synchronous: every write is committed before
 * the event is broadcast, so a client that reconnects with `since` never misses one). Events carry a per-job
 * sequence number starting at 1; (job_id, seq) is the primary key.
 */
import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";

export type JobState = "queued" | "running" | "paused" | "done" | "failed" | "cancelled";
export const FINAL_STATES: readonly JobState[] = ["done", "failed", "cancelled"];

export interface JobRecord {
  id: string;
  kind: string;
  state: JobState;
  params: unknown;
  /** State saved by the job to resume from (kinds that support it), or null. */
  checkpoint: unknown;
  result: unknown;
  error: string | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** Sequence number of the job's last event. */
  lastSeq: number;
}

export interface JobEvent {
  jobId: string;
  seq: number;
  time: number;
  type: string;
  data: unknown;
}

interface JobRow {
  id: string;
  kind: string;
  state: JobState;
  params: string;
  checkpoint: string | null;
  result: string | null;
  error: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  last_seq: number;
}

const parse = (s: string | null): unknown => (s === null ? null : JSON.parse(s));

function toRecord(r: JobRow): JobRecord {
  return {
    id: r.id,
    kind: r.kind,
    state: r.state,
    params: parse(r.params),
    checkpoint: parse(r.checkpoint),
    result: parse(r.result),
    error: r.error,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    lastSeq: r.last_seq,
  };
}

export class JobStore {
  private readonly db: Database.Database;

  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true });
    this.db = new Database(join(dataDir, "jobs.sqlite"));
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, params TEXT NOT NULL,
        checkpoint TEXT, result TEXT, error TEXT, created_at INTEGER NOT NULL,
        started_at INTEGER, finished_at INTEGER, last_seq INTEGER NOT NULL DEFAULT 0);
      CREATE TABLE IF NOT EXISTS events (
        job_id TEXT NOT NULL, seq INTEGER NOT NULL, time INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)) WITHOUT ROWID;`);
  }

  create(kind: string, params: unknown): JobRecord {
    const id = randomUUID();
    this.db
      .prepare("INSERT INTO jobs (id, kind, state, params, created_at) VALUES (?, ?, 'queued', ?, ?)")
      .run(id, kind, JSON.stringify(params), Date.now());
    return this.get(id) as JobRecord;
  }

  get(id: string): JobRecord | undefined {
    const row = this.db.prepare("SELECT * FROM jobs WHERE id = ?").get(id) as JobRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  list(): JobRecord[] {
    return (this.db.prepare("SELECT * FROM jobs ORDER BY created_at, rowid").all() as JobRow[]).map(toRecord);
  }

  inState(state: JobState): JobRecord[] {
    const rows = this.db.prepare("SELECT * FROM jobs WHERE state = ? ORDER BY created_at, rowid").all(state);
    return (rows as JobRow[]).map(toRecord);
  }

  update(
    id: string,
    fields: Partial<
      Pick<JobRecord, "state" | "checkpoint" | "result" | "error" | "startedAt" | "finishedAt">
    >,
  ): void {
    const columns: Record<string, unknown> = {};
    if (fields.state !== undefined) columns.state = fields.state;
    if (fields.checkpoint !== undefined) columns.checkpoint = JSON.stringify(fields.checkpoint);
    if (fields.result !== undefined) columns.result = JSON.stringify(fields.result);
    if (fields.error !== undefined) columns.error = fields.error;
    if (fields.startedAt !== undefined) columns.started_at = fields.startedAt;
    if (fields.finishedAt !== undefined) columns.finished_at = fields.finishedAt;
    const keys = Object.keys(columns);
    if (keys.length === 0) return;
    this.db
      .prepare(`UPDATE jobs SET ${keys.map((k) => `${k} = @${k}`).join(", ")} WHERE id = @id`)
      .run({ ...columns, id });
  }

  /** Appends an event with the job's next sequence number, in one transaction. */
  readonly appendEvent = (jobId: string, type: string, data: unknown): JobEvent => {
    return this.db.transaction((): JobEvent => {
      const row = this.db.prepare("SELECT last_seq FROM jobs WHERE id = ?").get(jobId) as
        | { last_seq: number }
        | undefined;
      if (row === undefined) throw new Error(`job ${jobId} does not exist`);
      const seq = row.last_seq + 1;
      const time = Date.now();
      this.db
        .prepare("INSERT INTO events (job_id, seq, time, type, data) VALUES (?, ?, ?, ?, ?)")
        .run(jobId, seq, time, type, JSON.stringify(data ?? null));
      this.db.prepare("UPDATE jobs SET last_seq = ? WHERE id = ?").run(seq, jobId);
      return { jobId, seq, time, type, data: data ?? null };
    })();
  };

  eventsSince(jobId: string, since: number): JobEvent[] {
    const rows = this.db
      .prepare("SELECT seq, time, type, data FROM events WHERE job_id = ? AND seq > ? ORDER BY seq")
      .all(jobId, since) as Array<{ seq: number; time: number; type: string; data: string }>;
    return rows.map((r) => ({ jobId, seq: r.seq, time: r.time, type: r.type, data: JSON.parse(r.data) }));
  }

  /** The job's newest event of one type (e.g. its last "metric"), without reading its whole history. */
  lastEvent(jobId: string, type: string): JobEvent | undefined {
    const row = this.db
      .prepare(
        "SELECT seq, time, type, data FROM events WHERE job_id = ? AND type = ? ORDER BY seq DESC LIMIT 1",
      )
      .get(jobId, type) as { seq: number; time: number; type: string; data: string } | undefined;
    return row === undefined
      ? undefined
      : { jobId, seq: row.seq, time: row.time, type: row.type, data: JSON.parse(row.data) };
  }

  close(): void {
    this.db.close();
  }
}
