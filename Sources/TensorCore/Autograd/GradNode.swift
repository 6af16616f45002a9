import Synchronization

/// One vertex of the autograd graph: the op that produced a tensor, or a leaf.
///
/// A non-leaf node holds its inputs' nodes and a VJP closure mapping the gradient of
/// its output to gradients of its inputs (written with Tensor ops). A leaf node holds
/// the accumulated `.grad` and the hooks that fire when a gradient is final.
/// `@unchecked Sendable` by design: mutable state (grad, hooks, closure) is guarded by
/// one mutex; the engine runs one backward pass over a graph at a time.
public final class GradNode: @unchecked Sendable, CustomStringConvertible {
    /// Name of the op that produced the tensor ("leaf" for leaves).
    public let op: String
    /// The input nodes, parallel to the gradients the VJP returns (nil: input needs no grad).
    private(set) var inputs: [GradNode?]
    /// Shape and dtype of the tensor this node produced (gradients must match).
    public let shape: [Int]
    public let dtype: DType
    public let isLeaf: Bool

    // The VJP closure is not @Sendable (it captures tensors freely); the mutex is the guard.
    struct State: @unchecked Sendable {
        var vjp: ((Tensor) -> [Tensor?])?
        var grad: Tensor?
        var hooks: [(id: Int, fn: @Sendable (Tensor) -> Tensor?)] = []
        var postAccumulateHooks: [(id: Int, fn: @Sendable (Tensor) -> Void)] = []
        var nextHookID = 0
        var freed = false
        /// A VJP accumulated into `.grad` directly during the running backward (`accumulateFused`).
        var fusedContribution = false
    }
    let state: Mutex<State>

    init(op: String, inputs: [GradNode?], shape: [Int], dtype: DType, vjp: ((Tensor) -> [Tensor?])?) {
        self.op = op
        self.inputs = inputs
        self.shape = shape
        self.dtype = dtype
        self.isLeaf = vjp == nil && inputs.isEmpty
        self.state = Mutex(State(vjp: vjp))
    }

    static func leaf(shape: [Int], dtype: DType) -> GradNode {
        GradNode(op: "leaf", inputs: [], shape: shape, dtype: dtype, vjp: nil)
    }

    public var description: String { "GradNode(\(op), \(shapeString(shape)), \(dtype))" }

    /// Releases the chain of inputs iteratively: a 100,000-op graph would otherwise be
    /// freed by 100,000 nested deinit calls and overflow the stack.
    deinit {
        // Drop the VJP first: its captures may hold the only other references to inputs.
        state.withLock { $0.vjp = nil }
        var stack = inputs.compactMap { $0 }
        inputs = []
        while var node = stack.popLast() {
            if isKnownUniquelyReferenced(&node) {
                node.state.withLock { $0.vjp = nil }
                stack.append(contentsOf: node.inputs.compactMap { $0 })
                node.inputs = []
            }
        }
    }
}

/// Handle returned when registering a hook; pass it to `removeHook` to unregister.
public struct HookHandle: Sendable, Hashable {
    let node: ObjectIdentifier
    let id: Int
    let post: Bool
}
