/** GuardianQuorum: every guardian's vote (the registry emits GuardianFlagged when a quorum is reached), quorum and membership changes. */
import { ponder } from "ponder:registry";
import { guardianVote } from "ponder:schema";
import { admin } from "./lib/admin.js";
import { eventId, lower, placeOf } from "./lib/rows.js";

ponder.on("GuardianQuorum:GuardianVoted", async ({ event, context }) => {
  const { deviceId, guardian, flag, round, reason } = event.args;
  await context.db.insert(guardianVote).values({
    id: eventId(event),
    deviceId,
    guardian: lower(guardian),
    flag,
    round: BigInt(round),
    reason,
    ...placeOf(event),
  });
});

ponder.on("GuardianQuorum:QuorumChanged", admin("GuardianQuorum", "QuorumChanged"));
ponder.on("GuardianQuorum:MembershipChanged", admin("GuardianQuorum", "MembershipChanged"));
ponder.on("GuardianQuorum:RoleGranted", admin("GuardianQuorum", "RoleGranted"));
ponder.on("GuardianQuorum:RoleRevoked", admin("GuardianQuorum", "RoleRevoked"));
ponder.on("GuardianQuorum:RoleAdminChanged", admin("GuardianQuorum", "RoleAdminChanged"));
