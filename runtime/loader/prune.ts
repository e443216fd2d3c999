/**
 * Drops the safepoint checks that are not needed to bound the time between
 * two checks. Binaryen's `log-execution` pass puts a logger call, wrapped in
 * a new two-item block `[call, original]`, at every function entry, at every
 * loop header, before every `return` and at every function exit. This walks
 * the instrumented IR and turns the unneeded calls into `nop`s.
 *
 * What stays:
 * - every loop-header check: each loop iteration passes one, so no loop
 *   runs unchecked;
 * - a function's entry check when the function calls something outside
 *   every loop of its own. A call inside a loop already follows that loop's
 *   check, so recursion and deep call trees still meet one check per call
 *   they make, and a function whose calls are all in loops runs at most its
 *   own straight-line code before its first check.
 * What goes: the exit and `return` checks (leaving a function starts no
 * unbounded work by itself: whatever the caller does next meets one of the
 * checks above) and the entries of functions that do not need one.
 *
 * The walk knows the expression kinds of the features our engine runs
 * without GC-only forms it cannot see into; on any kind it does not know it
 * gives up and leaves every check in place, which is always correct.
 */
import type { Binaryen, BinaryenModule } from './binaryen.ts';

type Ref = number;

export interface PruneResult { kept: number; dropped: number }

/** Thrown inside the walk when it meets an expression it cannot see into. */
class UnknownExpression extends Error {}

/** The child-expression getters of each expression kind, by the name of binaryen.js's wrapper class. */
const CHILDREN: Record<string, readonly string[]> = {
  Block: [], // children handled separately
  If: ['Condition', 'IfTrue', 'IfFalse'],
  Loop: ['Body'],
  Break: ['Condition', 'Value'],
  Switch: ['Condition', 'Value'],
  Call: [],
  CallIndirect: ['Target'],
  LocalSet: ['Value'],
  GlobalSet: ['Value'],
  TableGet: ['Index'],
  TableSet: ['Index', 'Value'],
  TableGrow: ['Delta', 'Value'],
  MemoryGrow: ['Delta'],
  Load: ['Ptr'],
  Store: ['Ptr', 'Value'],
  Unary: ['Value'],
  Binary: ['Left', 'Right'],
  Select: ['Condition', 'IfTrue', 'IfFalse'],
  Drop: ['Value'],
  Return: ['Value'],
  AtomicRMW: ['Ptr', 'Value'],
  AtomicCmpxchg: ['Ptr', 'Expected', 'Replacement'],
  AtomicWait: ['Ptr', 'Expected', 'Timeout'],
  AtomicNotify: ['Ptr', 'NotifyCount'],
  SIMDExtract: ['Vec'],
  SIMDReplace: ['Vec', 'Value'],
  SIMDShuffle: ['Left', 'Right'],
  SIMDTernary: ['A', 'B', 'C'],
  SIMDShift: ['Vec', 'Shift'],
  SIMDLoad: ['Ptr'],
  SIMDLoadStoreLane: ['Ptr', 'Vec'],
  MemoryInit: ['Dest', 'Offset', 'Size'],
  MemoryCopy: ['Dest', 'Source', 'Size'],
  MemoryFill: ['Dest', 'Value', 'Size'],
  RefIsNull: ['Value'],
  RefAs: ['Value'],
  RefEq: ['Left', 'Right'],
  RefTest: ['Ref'],
  RefCast: ['Ref'],
  BrOn: ['Ref'],
  Try: ['Body'],
  Throw: [],
  TupleMake: [],
  TupleExtract: ['Tuple'],
  RefI31: ['Value'],
  I31Get: ['I31'],
};
/** Kinds whose operands list holds child expressions (`getOperands`). */
const WITH_OPERANDS = new Set(['Call', 'CallIndirect', 'Throw', 'TupleMake']);
/** Kinds without child expressions. */
const LEAVES = new Set(['Nop', 'Unreachable', 'Pop', 'RefNull', 'LocalGet', 'GlobalGet', 'Const', 'MemorySize', 'AtomicFence', 'DataDrop', 'RefFunc', 'TableSize', 'Rethrow']);

interface Wrappers {
  Expression: { getId(e: Ref): number };
  Call: { getTarget(e: Ref): string };
  Block: { getNumChildren(e: Ref): number; getChildAt(e: Ref, i: number): Ref; setChildAt(e: Ref, i: number, child: Ref): void };
}

interface Kinds { byId: Map<number, string>; calls: Set<number> }
let kinds: Kinds | undefined;

function kindsOf(binaryen: Binaryen): Kinds {
  if (kinds) return kinds;
  const byId = new Map<number, string>();
  const b = binaryen as unknown as Record<string, unknown>;
  for (const name of [...Object.keys(CHILDREN), ...LEAVES]) {
    const id = b[`${name}Id`];
    if (typeof id === 'number') byId.set(id, name);
  }
  const calls = new Set([b.CallId, b.CallIndirectId].filter((x): x is number => typeof x === 'number'));
  kinds = { byId, calls };
  return kinds;
}

/**
 * Prune the checks of `mod` (already through `log-execution`, whose logger
 * is the function import named `logger`). On an expression kind the walk
 * does not know, nothing is changed and `unknown` names it.
 */
export function pruneChecks(binaryen: Binaryen, mod: BinaryenModule, logger: string): PruneResult & { unknown?: string } {
  const { byId, calls } = kindsOf(binaryen);
  // binaryen.js's expression wrapper classes (static accessors by kind; not in its typings).
  const b = binaryen as unknown as Record<string, Record<string, (r: Ref) => unknown>> & Wrappers;
  const blockId = binaryen.BlockId as number;
  const loopId = binaryen.LoopId as number;
  const callId = binaryen.CallId as number;
  const isLog = (e: Ref): boolean => e !== 0 && b.Expression.getId(e) === callId && b.Call.getTarget(e) === logger;

  // Decide first, change after: a walk that gives up half-way changes nothing.
  const drops: Ref[] = []; // blocks whose first child (a logger call) goes
  let kept = 0;
  try {
    for (let f = 0; f < mod.getNumFunctions(); f++) {
      const fn = binaryen.getFunctionInfo(mod.getFunctionByIndex(f));
      if (fn.module || !fn.body) continue;
      const body = fn.body as Ref;
      const entry = binaryen.getExpressionInfo(body).id === blockId && isLog(b.Block.getChildAt(body, 0)) ? body : 0;
      let callsOutsideLoops = false;
      // Iterative walk: [expression, loop depth, is it a loop's body].
      const stack: Array<[Ref, number, boolean]> = [[body, 0, false]];
      while (stack.length) {
        const [e, depth, loopBody] = stack.pop()!;
        if (!e) continue;
        const id = b.Expression.getId(e);
        const kind = byId.get(id);
        if (kind === undefined) throw new UnknownExpression(`expression kind ${id} in ${fn.name}`);
        if (id === blockId) {
          const n = b.Block.getNumChildren(e);
          if (n === 2 && e !== entry && isLog(b.Block.getChildAt(e, 0))) {
            if (loopBody) kept++;
            else drops.push(e);
          }
          for (let i = 0; i < n; i++) stack.push([b.Block.getChildAt(e, i), depth, false]);
          continue;
        }
        if (calls.has(id) && !isLog(e) && depth === 0) callsOutsideLoops = true;
        if (LEAVES.has(kind)) continue;
        const cls = b[kind]!;
        for (const g of CHILDREN[kind]!) stack.push([cls[`get${g}`]!(e) as Ref, id === loopId ? depth + 1 : depth, id === loopId]);
        if (WITH_OPERANDS.has(kind)) {
          for (const op of cls.getOperands!(e) as Ref[]) stack.push([op, depth, false]);
        }
        if (kind === 'Try') {
          for (const c of cls.getCatchBodies!(e) as Ref[]) stack.push([c, depth, false]);
        }
      }
      if (entry) {
        if (callsOutsideLoops) kept++;
        else drops.push(entry);
      }
    }
  } catch (err) {
    if (err instanceof UnknownExpression) return { kept: 0, dropped: 0, unknown: err.message };
    throw err;
  }
  for (const block of drops) b.Block.setChildAt(block, 0, mod.nop() as Ref);
  return { kept, dropped: drops.length };
}
