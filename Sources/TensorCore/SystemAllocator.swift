#if canImport(Glibc)
import Glibc
#endif

/// Process-wide settings of the C allocator that tensor storage comes from.
///
/// A training step allocates and frees the same large blocks every step (activations and
/// their gradients: a convnet-bn layer output at batch 128 is 12.8 MB). glibc serves
/// blocks above its mmap threshold (128 KiB at start, raised only after such a block is
/// freed, and trimmed back) with a fresh `mmap` each time, which the kernel page-faults in
/// and zeroes page by page and `munmap`s after one use. `perf` showed page clearing and
/// faults at ~7% of a convnet-bn training step.
///
/// `keepLargeBlocksInHeap` raises the mmap threshold (blocks up to `mmapThreshold` come
/// from the heap and are reused) and the trim threshold (free memory at the top of the heap
/// goes back to the system only past `trimThreshold`). The `loom` executable calls it at
/// start; a library user decides for their own process. It changes nothing when
/// `GLIBC_TUNABLES` already sets malloc tunables (the user's choice wins) and on systems
/// without glibc.
public enum SystemAllocator {
    /// Returns whether the thresholds were set.
    @discardableResult
    public static func keepLargeBlocksInHeap(mmapThreshold: Int = 64 << 20, trimThreshold: Int = 256 << 20) -> Bool {
        precondition(mmapThreshold > 0 && mmapThreshold <= Int(Int32.max), "SystemAllocator: mmapThreshold \(mmapThreshold) must be in 1...\(Int32.max) bytes")
        precondition(trimThreshold > 0 && trimThreshold <= Int(Int32.max), "SystemAllocator: trimThreshold \(trimThreshold) must be in 1...\(Int32.max) bytes")
        #if canImport(Glibc)
        if let tunables = getenv("GLIBC_TUNABLES"), String(cString: tunables).contains("glibc.malloc.") { return false }
        // malloc.h is not part of Swift's Glibc module: look `mallopt` up by name. The
        // parameter numbers are glibc's M_TRIM_THRESHOLD (-1) and M_MMAP_THRESHOLD (-3).
        typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return false }
        let mallopt = unsafeBitCast(symbol, to: MallOpt.self)
        let a = mallopt(-3, Int32(mmapThreshold))
        let b = mallopt(-1, Int32(trimThreshold))
        return a == 1 && b == 1
        #else
        return false
        #endif
    }
}
