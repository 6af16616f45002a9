import Synchronization

/// Bytes this process has sent through Loom's own algorithms (ring, halving-doubling,
/// tree, and reduce-scatter / all-gather run with `.ring`), counted where the transport
/// posts each send, so compression and sparsity show up as they really go out. MPI's own
/// collectives (`MPI_Allreduce`, ...) are not counted: MPI decides what it sends. (The
/// in-process backend's native ops are Loom code over the same transport and are counted.)
/// Process-wide; in-process ranks share it.
public enum WireStats {
    static let sent = Atomic<Int>(0)

    /// Bytes sent since the start or the last `reset()`.
    public static var bytesSent: Int { sent.load(ordering: .relaxed) }

    /// Sets the count back to zero.
    public static func reset() { sent.store(0, ordering: .relaxed) }

    static func add(_ bytes: Int) { sent.add(bytes, ordering: .relaxed) }
}
