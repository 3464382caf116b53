// Bursts: the same tools launched spaced, back to back, and by parallel clients.
import { BURST_ROUNDS, PAR_CLIENTS, PAR_EACH, SEQ_N, SPACED_GAP_MS, SPACED_N } from "./options.ts";
import { checkStop, state } from "./state.ts";

export interface BurstTool {
  name: string;
  /** One launch of /bin/true to its end; its wall time in ms. */
  once: () => Promise<number>;
  /** Untimed work after each series (ucr: REMOVE of what the series launched). */
  after?: () => Promise<void>;
}

export type BurstKind = "spaced" | "seq" | "par";
export const BURST_KINDS: { kind: BurstKind; label: string }[] = [
  { kind: "spaced", label: `spaced (${SPACED_N}, ${SPACED_GAP_MS} ms apart)` },
  { kind: "seq", label: `sequential burst of ${SEQ_N}, no gap` },
  { kind: "par", label: `${PAR_CLIENTS} parallel clients × ${PAR_EACH} back to back` },
];

export async function runBursts(tools: BurstTool[]): Promise<Map<string, { times: Record<BurstKind, number[]>; failure?: string }>> {
  const out = new Map(
    tools.map((t) => [
      t.name,
      { times: { spaced: [], seq: [], par: [] } as Record<BurstKind, number[]>, failure: undefined as string | undefined },
    ]),
  );
  for (let round = 0; round < BURST_ROUNDS; round++) {
    for (const { kind } of BURST_KINDS) {
      const k = round % tools.length;
      for (const tool of [...tools.slice(k), ...tools.slice(0, k)]) {
        const r = out.get(tool.name)!;
        if (r.failure) continue;
        checkStop();
        // Whatever the last series left running settles first.
        await Bun.sleep(500);
        try {
          if (kind === "spaced") {
            for (let i = 0; i < SPACED_N; i++) {
              await Bun.sleep(SPACED_GAP_MS);
              r.times.spaced.push(await tool.once());
            }
          } else if (kind === "seq") {
            for (let i = 0; i < SEQ_N; i++) r.times.seq.push(await tool.once());
          } else {
            await Promise.all(
              Array.from({ length: PAR_CLIENTS }, async () => {
                for (let i = 0; i < PAR_EACH; i++) r.times.par.push(await tool.once());
              }),
            );
          }
          await tool.after?.();
        } catch (e) {
          if (state.cleaning) throw e;
          r.failure = `${kind}: ${(e as Error).message}`;
        }
      }
      console.error(`launch: bursts, round ${round + 1}/${BURST_ROUNDS}, ${kind} done`);
    }
  }
  return out;
}
