/**
 * Host-side errors. One base class, one subclass per failure, each with a
 * stable `code` that scripts can match on. Every code is listed in
 * docs/errors.md (a test checks the list). Messages say what was wrong and
 * whose fault it is (the image, the caller, the host).
 */
export class WvError extends Error {
  /** Stable machine-readable code, e.g. `WV_ERR_NO_MEMORY`. */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The guest image bytes are not a WebAssembly binary. */
export class ImageNotWasmError extends WvError {
  constructor(image: string, detail: string) {
    super('WV_ERR_IMAGE_NOT_WASM', `guest image ${image} is not WebAssembly: ${detail}`);
  }
}

/** The image is a Wasm binary that does not validate or compile. */
export class ImageInvalidError extends WvError {
  constructor(image: string, detail: string) {
    super('WV_ERR_IMAGE_INVALID', `guest image ${image} is not a valid module: ${detail}`);
  }
}

/** The image defines (or exports) its own memory instead of importing the kernel's. */
export class ImageOwnMemoryError extends WvError {
  constructor(image: string) {
    super('WV_ERR_IMAGE_OWN_MEMORY',
      `guest image ${image} defines its own memory; a guest must import its memory as env.memory (shared), which the kernel creates`);
  }
}

/** The image's memory import is not the shape the kernel provides. */
export class ImageMemoryShapeError extends WvError {
  constructor(image: string, detail: string) {
    super('WV_ERR_IMAGE_MEMORY_SHAPE', `guest image ${image} has an unusable memory import: ${detail}`);
  }
}

/** The image needs more memory at start than the domain is allocated. */
export class ImageMemoryTooLargeError extends WvError {
  constructor(image: string, neededBytes: number, allocationBytes: number) {
    super('WV_ERR_IMAGE_MEMORY_TOO_LARGE',
      `guest image ${image} needs ${neededBytes} bytes of memory at start, more than the domain's allocation of ${allocationBytes} bytes`);
  }
}

/** The image imports something outside the hypercall ABI. */
export class ImageForbiddenImportError extends WvError {
  constructor(image: string, module: string, name: string, kind: string) {
    super('WV_ERR_IMAGE_FORBIDDEN_IMPORT',
      `guest image ${image} imports ${kind} "${module}"."${name}", which is not part of the hypercall ABI`);
  }
}

/** The image lacks an export the ABI requires, or it has the wrong type. */
export class ImageMissingExportError extends WvError {
  constructor(image: string, name: string, detail: string) {
    super('WV_ERR_IMAGE_MISSING_EXPORT', `guest image ${image} must export function "${name}": ${detail}`);
  }
}

/** A data segment of the image lies in the kernel's start-info page. */
export class ImageStartPageOverlapError extends WvError {
  constructor(image: string, offset: number, length: number, pageEnd: number) {
    super('WV_ERR_IMAGE_START_PAGE_OVERLAP',
      `guest image ${image} places ${length} bytes of data at address ${offset}, inside the start-info page [0, ${pageEnd}); link data at ${pageEnd} or above`);
  }
}

/** A domain does not fit in the host memory budget. */
export class OutOfMemoryBudgetError extends WvError {
  readonly requestedBytes: number;
  readonly freeBytes: number;
  constructor(requestedBytes: number, freeBytes: number, totalBytes: number) {
    super('WV_ERR_NO_MEMORY',
      `not enough host memory for the domain: it needs ${mib(requestedBytes)}, ${mib(freeBytes)} of ${mib(totalBytes)} is free`);
    this.requestedBytes = requestedBytes;
    this.freeBytes = freeBytes;
  }
}

/** The host refused to create a domain's memory (address space or RAM exhausted). */
export class HostMemoryError extends WvError {
  constructor(requestedBytes: number, detail: string) {
    super('WV_ERR_HOST_MEMORY', `the host could not create a ${mib(requestedBytes)} memory for the domain: ${detail}`);
  }
}

/** The domain id or name names no domain. */
export class NoSuchDomainError extends WvError {
  constructor(ref: string | number) {
    super('WV_ERR_NO_SUCH_DOMAIN', `no domain ${typeof ref === 'number' ? `with id ${ref}` : `named "${ref}"`}`);
  }
}

/** The action is not allowed in the domain's current phase. */
export class DomainPhaseError extends WvError {
  constructor(domid: number, action: string, phase: string) {
    super('WV_ERR_BAD_PHASE', `cannot ${action} domain ${domid}: it is ${phase}`);
  }
}

/** A caller passed a bad argument (an API or CLI caller, not a guest). */
export class InvalidArgumentError extends WvError {
  constructor(what: string, detail: string) {
    super('WV_ERR_INVALID_ARGUMENT', `invalid ${what}: ${detail}`);
  }
}

/** A domain name is already taken. */
export class DomainExistsError extends WvError {
  constructor(name: string) {
    super('WV_ERR_DOMAIN_EXISTS', `a domain named "${name}" already exists`);
  }
}

/** Every domain id is in use. */
export class NoFreeDomainIdError extends WvError {
  constructor(max: number) {
    super('WV_ERR_NO_DOMAIN_ID', `no free domain id: all ${max} are in use`);
  }
}

/** The hypervisor was closed. */
export class HypervisorClosedError extends WvError {
  constructor() {
    super('WV_ERR_CLOSED', 'the hypervisor has been closed');
  }
}

/**
 * The peer broke the ring protocol: it published an index that claims more
 * messages than can exist (more requests than slots, more responses than
 * requests, or an index that went backwards past what was consumed). The
 * ring that raised it is broken for good: every later operation throws the
 * same error. The fault is the peer's, which is said in the message.
 */
export class RingProtocolError extends WvError {
  /** The header field holding the bad value. */
  readonly field: 'req_prod' | 'rsp_prod';
  /** The value read from the page. */
  readonly value: number;
  constructor(field: 'req_prod' | 'rsp_prod', value: number, detail: string) {
    const peer = field === 'req_prod' ? 'front' : 'back';
    super('WV_ERR_RING_PROTOCOL', `shared ring protocol violated by the ${peer} end: ${field} = ${value} ${detail}`);
    this.field = field;
    this.value = value;
  }
}

/** One frame of a guest backtrace. */
export interface TrapFrame {
  /** Function name from the module's name section, or `func[N]`. */
  readonly func: string;
  /** Byte offset of the instruction within the module, when known. */
  readonly offset?: number;
}

/**
 * A guest fault: the domain trapped (or its vCPU host failed) and is crashed.
 * Carries the trap reason and the Wasm backtrace with function names.
 */
export class DomainTrap extends WvError {
  readonly domid: number;
  readonly reason: string;
  readonly backtrace: readonly TrapFrame[];
  constructor(domid: number, reason: string, backtrace: readonly TrapFrame[]) {
    const where = backtrace.length > 0 ? ` in ${backtrace.map((f) => f.func).join(' <- ')}` : '';
    super('WV_ERR_DOMAIN_TRAP', `domain ${domid} crashed: ${reason}${where}`);
    this.domid = domid;
    this.reason = reason;
    this.backtrace = backtrace;
  }
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(bytes % (1024 * 1024) === 0 ? 0 : 2)} MiB`;
}
