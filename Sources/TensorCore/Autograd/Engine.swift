/// The backward engine: an iterative traversal of the graph, so chains of any depth
/// (10,000 ops and more) run without growing the call stack.
///
/// Order: nodes are released in dependency order (Kahn's algorithm). A node's gradient
/// is final once every consumer has contributed; its tensor hooks run then, and for a
/// leaf the gradient is accumulated into `.grad` and post-accumulate hooks fire at once.
/// Ready nodes are processed last-in first-out, so a leaf whose gradient is final is
/// handled before the engine moves further down the graph: data parallelism relies on
/// this to start communication while backward continues.
enum BackwardEngine {
    static func run(roots: [(GradNode, Tensor)], retainGraph: Bool) {
        noGrad {
            // 1. Discover reachable nodes and count consumers of each (iterative DFS).
            var dependencies: [ObjectIdentifier: Int] = [:]
            var visited: Set<ObjectIdentifier> = []
            var stack: [GradNode] = []
            for (node, _) in roots where visited.insert(ObjectIdentifier(node)).inserted {
                stack.append(node)
            }
            while let node = stack.popLast() {
                for case let input? in node.inputs {
                    let id = ObjectIdentifier(input)
                    dependencies[id, default: 0] += 1
                    if visited.insert(id).inserted { stack.append(input) }
                }
            }
            // 2. Seed pending gradients with the roots.
            var pending: [ObjectIdentifier: Tensor] = [:]
            for (node, grad) in roots {
                let id = ObjectIdentifier(node)
                pending[id] = pending[id].map { $0 + grad } ?? grad
            }
            var ready: [GradNode] = []
            var seen: Set<ObjectIdentifier> = []
            for (node, _) in roots where (dependencies[ObjectIdentifier(node)] ?? 0) == 0 {
                if seen.insert(ObjectIdentifier(node)).inserted { ready.append(node) }
            }
            // 3. Release nodes in dependency order.
            while let node = ready.popLast() {
                let id = ObjectIdentifier(node)
                guard var grad = pending.removeValue(forKey: id) else {
                    // A leaf whose every contribution was fused into `.grad` is final now too.
                    if node.isLeaf { node.finishFused() }
                    continue
                }
                let (hooks, vjp, freed) = node.state.withLock { s in (s.hooks, s.vjp, s.freed) }
                for hook in hooks { if let replaced = hook.fn(grad) { grad = replaced } }
                if node.isLeaf {
                    node.accumulate(grad)
                    continue
                }
                guard let vjp else {
                    preconditionFailure(freed
                        ? "backward: the graph through '\(node.op)' was already freed by an earlier backward; pass retainGraph: true to the first call"
                        : "backward: node '\(node.op)' has no derivative")
                }
                if !retainGraph { node.state.withLock { s in s.vjp = nil; s.freed = true } }
                let inputGrads = vjp(grad)
                precondition(inputGrads.count == node.inputs.count,
                             "backward: '\(node.op)' returned \(inputGrads.count) gradients for \(node.inputs.count) inputs")
                var readyLeaves: [GradNode] = []
                for (input, g) in zip(node.inputs, inputGrads) {
                    guard let input else { continue }
                    let iid = ObjectIdentifier(input)
                    if let g {
                        precondition(g.shape == input.shape,
                                     "backward: '\(node.op)' produced a gradient of shape \(shapeString(g.shape)) for an input of shape \(shapeString(input.shape))")
                        let gc = g.dtype == input.dtype ? g : g.to(input.dtype)
                        pending[iid] = pending[iid].map { $0 + gc } ?? gc
                    }
                    let left = dependencies[iid]! - 1
                    dependencies[iid] = left
                    if left == 0, pending[iid] != nil || (input.isLeaf && input.hasFusedContribution) {
                        if input.isLeaf { readyLeaves.append(input) } else { ready.append(input) }
                    }
                }
                // Leaves go on top of the stack: their gradients are final now, so their
                // hooks fire before the engine descends further.
                ready.append(contentsOf: readyLeaves.reversed())
            }
        }
    }
}

extension GradNode {
    /// Gradient-accumulation fusion: lets a VJP add its contribution to this leaf's gradient
    /// straight into `.grad` (e.g. a GEMM with beta = 1), instead of returning a gradient the
    /// engine adds. `write` receives the current `.grad` (nil if none yet; it must then
    /// create it, charged as `.gradients`) and leaves the sum in it; it must not touch this
    /// node otherwise (it runs under the node's lock). Returns false, without calling
    /// `write`, when fusion is not allowed: not a leaf, or tensor hooks are registered (they
    /// must see each contribution). The caller then returns the gradient as usual. The
    /// engine treats a fused contribution like a pending one: the leaf becomes final when
    /// its last consumer ran, and its post-accumulate hooks fire once.
    public func accumulateFused(_ write: (inout Tensor?) -> Void) -> Bool {
        // `.grad` is taken out and bound once: the only reference, so the write is in place.
        guard case .some(var grad) = takeForFusion() else { return false }
        write(&grad)
        guard let grad else { preconditionFailure("accumulateFused: no gradient written for a \(shapeString(shape)) \(dtype) leaf") }
        putFused(grad)
        return true
    }

    /// Takes this leaf's `.grad` out for an in-place accumulation done elsewhere (the
    /// checkpoint node's recomputed backward), leaving nil; `putFused` puts the result back.
    /// Returns nil (and takes nothing) when fusion is not allowed, as for `accumulateFused`;
    /// otherwise `.some(existing)`.
    func takeForFusion() -> Tensor?? {
        guard isLeaf else { return nil }
        return state.withLock { s in
            guard s.hooks.isEmpty else { return nil }
            defer { s.grad = nil }
            return .some(s.grad)
        }
    }

    /// Puts back the gradient taken by `takeForFusion`, now including a fused contribution.
    func putFused(_ grad: Tensor) {
        precondition(grad.shape == shape && grad.dtype == dtype,
                     "putFused: the gradient written for a \(shapeString(shape)) \(dtype) leaf is \(shapeString(grad.shape)) \(grad.dtype)")
        state.withLock { s in
            s.grad = grad
            s.fusedContribution = true
        }
    }

    var hasFusedContribution: Bool { state.withLock { $0.fusedContribution } }

    /// Ends a backward for a leaf that received only fused contributions: post-accumulate hooks.
    func finishFused() {
        let post: [(id: Int, fn: @Sendable (Tensor) -> Void)] = state.withLock { s in
            guard s.fusedContribution else { return [] }
            s.fusedContribution = false
            return s.postAccumulateHooks
        }
        if !post.isEmpty {
            let current = state.withLock { $0.grad! }
            for hook in post { hook.fn(current) }
        }
    }

    /// Adds a final gradient into `.grad` and runs the post-accumulate hooks.
    func accumulate(_ g: Tensor) {
        let post: [(id: Int, fn: @Sendable (Tensor) -> Void)] = state.withLock { s in
            s.fusedContribution = false
            if var existing = s.grad {
                // In place when `.grad` is the only reference (no second gradient-sized
                // tensor during accumulation); a copy otherwise (value semantics).
                s.grad = nil
                existing.add_(g)
                s.grad = existing
            } else {
                s.grad = Memory.withTag(.gradients) { g.contiguousCopy() }
            }
            return s.postAccumulateHooks
        }
        if !post.isEmpty {
            let current = state.withLock { $0.grad! }
            for hook in post { hook.fn(current) }
        }
    }
}
