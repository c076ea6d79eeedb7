/**
 * Which browser origins may talk to the service: its own (same-origin page), the configured WebUI's, and
 * any listed explicitly. Requests without an Origin header are non-browser clients (they still need the
 * token for anything that changes state). Also the DNS-rebinding guard: on a loopback bind, the Host header
 * must name a loopback host, so a page on an attacker's domain resolved to 127.0.0.1 is refused.
 */
import type { IncomingHttpHeaders } from "node:http";

const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

export function hostName(hostHeader: string | undefined): string | null {
  if (hostHeader === undefined) return null;
  try {
    return new URL(`http://${hostHeader}`).hostname;
  } catch {
    return null;
  }
}

export function isLoopbackHost(hostHeader: string | undefined): boolean {
  const h = hostName(hostHeader);
  return h !== null && LOOPBACK_HOSTS.has(h);
}

export function isLoopbackAddress(address: string | undefined): boolean {
  return address === "127.0.0.1" || address === "::1" || address === "::ffff:127.0.0.1";
}

export class OriginPolicy {
  private readonly allowed: Set<string>;

  constructor(
    extraOrigins: string[],
    /** Bound to loopback only: enforce the Host check. */
    readonly loopbackOnly: boolean,
  ) {
    this.allowed = new Set(extraOrigins.map((o) => new URL(o).origin));
  }

  /** Same origin = the Origin's host:port equals the Host header (scheme http, which is all we serve). */
  isAllowed(headers: IncomingHttpHeaders): boolean {
    const origin = headers.origin;
    if (origin === undefined) return true;
    if (this.allowed.has(origin)) return true;
    try {
      const o = new URL(origin);
      return o.protocol === "http:" && o.host === headers.host;
    } catch {
      return false;
    }
  }

  /** Whether the origin is a cross-origin one we allow (CORS answer needed). */
  isAllowedCrossOrigin(origin: string | undefined): boolean {
    return origin !== undefined && this.allowed.has(origin);
  }

  hostOk(headers: IncomingHttpHeaders): boolean {
    return !this.loopbackOnly || isLoopbackHost(headers.host);
  }
}
