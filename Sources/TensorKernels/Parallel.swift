import Dispatch

/// Wraps a value (usually an unsafe pointer) so it can cross into a `@Sendable` closure.
///
/// `@unchecked Sendable` by design: callers partition the pointed-to memory so that
/// no two workers touch the same element.
public struct UnsafeSendableBox<T>: @unchecked Sendable {
    public let value: T
    @inlinable public init(_ value: T) { self.value = value }
}

/// Kernel threading policy. Loom's own threads never spin: work runs on
/// `DispatchQueue.concurrentPerform`, whose workers block when idle.
public enum KernelThreading {
    /// Upper bound on worker threads for Loom's own kernels (not OpenBLAS's).
    nonisolated(unsafe) public static var maxThreads: Int = max(1, min(ProcessInfoCores.count, 2))
    /// Minimum elements per chunk before splitting pays (per-call overhead is a few µs).
    public static let minChunk = 1 << 16
}

/// Number of online cores, read once.
public enum ProcessInfoCores {
    public static let count: Int = {
        #if canImport(Glibc)
        return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #else
        return 2
        #endif
    }()
}

#if canImport(Glibc)
import Glibc
#endif

/// Splits `0..<count` into contiguous chunks and runs `body(range)` on each, in parallel
/// when the range is large enough (`grain` elements per chunk at least).
@inlinable
public func parallelChunks(count: Int, grain: Int = KernelThreading.minChunk, _ body: (Range<Int>) -> Void) {
    let threads = KernelThreading.maxThreads
    if count <= 0 { return }
    if threads <= 1 || count < 2 * grain {
        body(0..<count)
        return
    }
    let chunks = min(threads, count / grain)
    withoutActuallyEscaping(body) { escapable in
        let box = UnsafeSendableBox(escapable)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = count * c / chunks
            let hi = count * (c + 1) / chunks
            box.value(lo..<hi)
        }
    }
}

/// Splits a strided index space along its leading (coalesced) dimension and calls
/// `body(shape, strides, offsets)` once per slice, on up to `KernelThreading.maxThreads`
/// threads when there are at least `2 * minElements` elements (else once, inline).
///
/// Call the elementwise kernel inside `body` with a literal closure: the per-element op is
/// then inlined into each slice's loop. (Capturing the op in a closure that crosses into
/// `concurrentPerform` defeats inlining: measured 6x slower than one thread.)
@inlinable
public func forEachParallelSlice(
    shape: [Int], strides: [[Int]], offsets: [Int], minElements: Int = KernelThreading.minChunk,
    _ body: (_ shape: [Int], _ strides: [[Int]], _ offsets: [Int]) -> Void
) {
    let count = elementCount(shape)
    let threads = KernelThreading.maxThreads
    let (cs, cst) = coalesceDimensions(shape: shape, strides: strides)
    guard threads > 1, count >= 2 * minElements, let lead = cs.first, lead >= 2 else {
        body(shape, strides, offsets)
        return
    }
    let parts = Swift.min(threads, lead)
    let rest = Array(cs.dropFirst())
    let restStrides = cst.map { Array($0.dropFirst()) }
    withoutActuallyEscaping(body) { escapable in
        let box = UnsafeSendableBox(escapable)
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lo = lead * p / parts, hi = lead * (p + 1) / parts
            var offs = offsets
            for o in 0..<offs.count { offs[o] += lo * cst[o][0] }
            var strides = restStrides
            for o in 0..<strides.count { strides[o] = [cst[o][0]] + strides[o] }
            box.value([hi - lo] + rest, strides, offs)
        }
    }
}

/// Runs `body(i)` for every `i` in `0..<iterations` on Loom's worker threads; Dispatch hands
/// iterations to whichever worker is free. `body` must write disjoint memory per iteration.
///
/// Put the per-element work inside a kernel that `body` calls (not in a closure `body`
/// captures): see `forEachParallelSlice`.
@inlinable
public func concurrentIterations(_ iterations: Int, _ body: (Int) -> Void) {
    if iterations <= 0 { return }
    if iterations == 1 || KernelThreading.maxThreads <= 1 {
        for i in 0..<iterations { body(i) }
        return
    }
    withoutActuallyEscaping(body) { escapable in
        let box = UnsafeSendableBox(escapable)
        DispatchQueue.concurrentPerform(iterations: iterations) { box.value($0) }
    }
}
