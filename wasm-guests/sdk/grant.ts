// The raw grant-table imports (interface `grant` of host-bindings/wit/hypercall.wit).
// A negative result is a negated errno (constants in ./abi).

/** Let domain `grantee` reach the 4 KiB page at guest address `page * 4096`, read-only when `readonly` is 1. Returns the grant reference, or -ESRCH, -EFAULT, -EINVAL, -ENOSPC. */
@external("wasmvisor:hypercall/grant@0.1.0", "grant-access")
export declare function grant_access(grantee: u32, page: u32, readonly: u32): i32;

/** End grant `gref`. Returns 0, -EINVAL (not in use), or -EBUSY while a copy through it is in progress. */
@external("wasmvisor:hypercall/grant@0.1.0", "end-access")
export declare function grant_end_access(gref: u32): i32;

/** Copy `len` bytes at `offset` of the page `granter` granted as `gref` to guest address `dst`. Returns `len`, or -ESRCH, -EINVAL, -EFAULT. */
@external("wasmvisor:hypercall/grant@0.1.0", "copy-from")
export declare function grant_copy_from(granter: u32, gref: u32, offset: u32, dst: u32, len: u32): i32;

/** Copy `len` bytes from guest address `src` to `offset` of the granted page. Returns `len`, or the errors of copy-from and -EACCES (read-only grant). */
@external("wasmvisor:hypercall/grant@0.1.0", "copy-to")
export declare function grant_copy_to(granter: u32, gref: u32, offset: u32, src: u32, len: u32): i32;
