/** The one error type of the schedulers module: a bad config file/field, a bad argument, a bad shape. */

export type SchedulerErrorCode = "CONFIG_READ" | "CONFIG_FIELD" | "BAD_ARGUMENT" | "SHAPE_MISMATCH";

export class SchedulerError extends Error {
  override name = "SchedulerError";
  readonly code: SchedulerErrorCode;
  /** The config file or the argument the problem is in. */
  readonly where: string;

  constructor(code: SchedulerErrorCode, where: string, message: string, options?: ErrorOptions) {
    super(`${where}: ${message}`, options);
    this.code = code;
    this.where = where;
  }
}
