#if canImport(Glibc)
import Glibc
#endif

/// Keeps glibc's malloc from serving large message buffers with a fresh `mmap` each.
///
/// A sample response of 64 frames is 1.8 MB, and gRPC's framer and both sides' buffers are
/// as large; above glibc's mmap threshold (128 KiB, raised dynamically only after such a
/// block is freed, and trimmed back) every such buffer was mapped, page-faulted in (the
/// kernel zeroes each page) and unmapped after one use: page faults were ~8% of the CPU of
/// a frame sampling run in `perf`; with the thresholds below the same `bench` run
/// (u8x84x84x4 sample_b1) took 5x fewer page faults (163k -> 34k).
/// Blocks up to 64 MiB now come from the heap and freed memory is returned to the system
/// only past 256 MiB of free space at the top. Process-wide, so only the `loom-replay`
/// executable does it (not the client library).
///
/// `mallopt` is looked up with `dlsym` (malloc.h is not part of Swift's Glibc module); the
/// parameter numbers are glibc's `M_TRIM_THRESHOLD` (-1) and `M_MMAP_THRESHOLD` (-3).
func tuneMallocForLargeMessages() {
    #if canImport(Glibc)
    typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
    let mallopt = unsafeBitCast(symbol, to: MallOpt.self)
    _ = mallopt(-3, 64 << 20)  // M_MMAP_THRESHOLD
    _ = mallopt(-1, 256 << 20)  // M_TRIM_THRESHOLD
    #endif
}
