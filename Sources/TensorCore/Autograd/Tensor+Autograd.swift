/// The autograd surface of `Tensor`: requiresGrad, grad, backward, detach, hooks.
extension Tensor {
    /// Whether gradients flow to this tensor. Setting it on a tensor without history makes it a leaf.
    public var requiresGrad: Bool {
        get { gradNode != nil }
        set {
            if newValue {
                if gradNode == nil {
                    precondition(dtype.isFloatingPoint, "requiresGrad: only floating-point tensors can require gradients, this one is \(dtype)")
                    gradNode = .leaf(shape: shape, dtype: dtype)
                }
            } else {
                precondition(gradNode == nil || gradNode!.isLeaf,
                             "requiresGrad: cannot turn off gradients of a non-leaf tensor (produced by '\(gradNode!.op)'); use detach()")
                gradNode = nil
            }
        }
    }

    /// Returns a leaf copy of this tensor (sharing storage) that requires grad.
    public func requiringGrad() -> Tensor {
        var t = detached()
        t.requiresGrad = true
        return t
    }

    /// Whether this tensor is a leaf of the graph (no recorded history).
    public var isLeaf: Bool { gradNode?.isLeaf ?? true }

    /// The accumulated gradient of a leaf, or nil.
    public var grad: Tensor? {
        get { gradNode?.state.withLock { $0.grad } }
        nonmutating set {
            guard let node = gradNode else {
                precondition(newValue == nil, "grad: tensor does not require grad")
                return
            }
            if let g = newValue {
                precondition(g.shape == node.shape, "grad: shape \(shapeString(g.shape)) does not match tensor shape \(shapeString(node.shape))")
            }
            node.state.withLock { $0.grad = newValue }
        }
    }

    /// Clears the accumulated gradient.
    public func zeroGrad() { if gradNode != nil { grad = nil } }

    /// The same values without history: shares storage, requires no grad.
    public func detached() -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype, gradNode: nil)
    }

    /// Backpropagates from a one-element tensor (gradient 1).
    public func backward(retainGraph: Bool = false) {
        precondition(count == 1, "backward: called on a tensor of shape \(shapeString(shape)); a non-scalar output needs an explicit gradient: backward(gradient)")
        backward(Tensor.ones(shape, dtype: dtype), retainGraph: retainGraph)
    }

    /// Backpropagates `gradient` (same shape as this tensor) through the recorded graph.
    public func backward(_ gradient: Tensor, retainGraph: Bool = false) {
        guard let node = gradNode else {
            preconditionFailure("backward: tensor does not require grad and has no recorded history")
        }
        precondition(gradient.shape == shape, "backward: gradient of shape \(shapeString(gradient.shape)) for a tensor of shape \(shapeString(shape))")
        BackwardEngine.run(roots: [(node, gradient.detached())], retainGraph: retainGraph)
    }

    /// Registers a hook that runs when this tensor's gradient is final; it may return a
    /// replacement gradient. For leaves it runs before accumulation into `.grad`.
    @discardableResult
    public func registerHook(_ hook: @escaping @Sendable (Tensor) -> Tensor?) -> HookHandle {
        guard let node = gradNode else { preconditionFailure("registerHook: tensor does not require grad") }
        return node.state.withLock { s in
            let id = s.nextHookID
            s.nextHookID += 1
            s.hooks.append((id, hook))
            return HookHandle(node: ObjectIdentifier(node), id: id, post: false)
        }
    }

    /// Registers a hook on a leaf that runs after its gradient was accumulated into
    /// `.grad` (PyTorch's `register_post_accumulate_grad_hook`). DDP starts communication here.
    @discardableResult
    public func registerPostAccumulateGradHook(_ hook: @escaping @Sendable (Tensor) -> Void) -> HookHandle {
        guard let node = gradNode, node.isLeaf else { preconditionFailure("registerPostAccumulateGradHook: only leaves that require grad accumulate gradients") }
        return node.state.withLock { s in
            let id = s.nextHookID
            s.nextHookID += 1
            s.postAccumulateHooks.append((id, hook))
            return HookHandle(node: ObjectIdentifier(node), id: id, post: true)
        }
    }

    /// Unregisters a hook registered on this tensor.
    public func removeHook(_ handle: HookHandle) {
        guard let node = gradNode, ObjectIdentifier(node) == handle.node else { return }
        node.state.withLock { s in
            if handle.post { s.postAccumulateHooks.removeAll { $0.id == handle.id } } else { s.hooks.removeAll { $0.id == handle.id } }
        }
    }

    /// Attaches a node for `op` to this freshly computed result when grad mode is on and
    /// any input requires grad. `vjp` maps the output gradient to one gradient per input
    /// (nil where none is needed); it runs later, in no-grad mode.
    public func recording(_ op: String, inputs: [Tensor], vjp: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        guard GradMode.isEnabled else { return self }
        var any = false
        for t in inputs where t.gradNode != nil { any = true; break }
        guard any else { return self }
        OpRegistry.assertRegistered(op)
        var out = self
        out.gradNode = GradNode(op: op, inputs: inputs.map { $0.gradNode }, shape: shape, dtype: dtype, vjp: vjp)
        return out
    }
}

/// Functional autograd: value and gradients of a closure.
///
/// `f` receives leaf copies of `inputs` that require grad and must return a one-element
/// tensor. Gradients of inputs that `f` does not use are zeros.
public func valueAndGrad(of inputs: [Tensor], _ f: ([Tensor]) -> Tensor) -> (value: Tensor, grads: [Tensor]) {
    let leaves = inputs.map { $0.requiringGrad() }
    let value = enableGrad { f(leaves) }
    precondition(value.count == 1, "valueAndGrad: the function returned shape \(shapeString(value.shape)); expected one element (use vjp for other outputs)")
    if value.gradNode != nil { value.backward() }
    let grads = leaves.map { $0.grad ?? Tensor.zeros($0.shape, dtype: $0.dtype) }
    return (value.detached(), grads)
}

/// Vector-Jacobian product: `f(inputs)` and the gradients of `<f(inputs), cotangent>` with respect to each input.
public func vjp(of inputs: [Tensor], cotangent: Tensor, _ f: ([Tensor]) -> Tensor) -> (value: Tensor, grads: [Tensor]) {
    let leaves = inputs.map { $0.requiringGrad() }
    let value = enableGrad { f(leaves) }
    precondition(cotangent.shape == value.shape, "vjp: cotangent of shape \(shapeString(cotangent.shape)) for an output of shape \(shapeString(value.shape))")
    if value.gradNode != nil { value.backward(cotangent) }
    let grads = leaves.map { $0.grad ?? Tensor.zeros($0.shape, dtype: $0.dtype) }
    return (value.detached(), grads)
}
