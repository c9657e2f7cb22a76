/** The handler for events recorded as they are, for audit: roles, approvals, domain and quorum changes. */
import type { Context } from "ponder:registry";
import { adminEvent } from "ponder:schema";
import { eventId, placeOf, type EventLike } from "./rows.js";

export function admin(contract: string, name: string) {
  return async ({ event, context }: { event: EventLike & { args: unknown }; context: Context }) => {
    const args: Record<string, string | number | boolean> = {};
    for (const [k, v] of Object.entries((event.args ?? {}) as Record<string, unknown>))
      args[k] =
        typeof v === "bigint" ? v.toString() : typeof v === "string" ? v.toLowerCase() : (v as number | boolean);
    await context.db.insert(adminEvent).values({ id: eventId(event), contract, name, args, ...placeOf(event) });
  };
}
