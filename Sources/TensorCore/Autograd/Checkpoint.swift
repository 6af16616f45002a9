/// Gradient checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory
/// Cost"): run a segment of the forward pass without keeping its intermediate tensors,
/// and recompute them when backward reaches the segment.
///
/// `checkpoint(inputs) { xs in ... }` runs `f` in no-grad mode, so only its output is
/// kept; the autograd graph gets one node ("checkpoint") whose inputs are `inputs`. When
/// backward reaches that node it
/// 1. restores the default generator to its state before the first run, so random ops
///    (dropout) draw the same numbers, and restores the later state afterwards;
/// 2. re-runs `f` with recording on and `GradMode.isRecomputing` set (BatchNorm skips its
///    running-statistics update then, so a step updates them once);
/// 3. backpropagates the incoming gradient through the recomputed graph and returns the
///    gradients of `inputs`, which the outer backward accumulates as usual (so leaf hooks,
///    such as data-parallel ones, fire from the outer pass in the ordinary order).
///
/// An input that is a leaf without tensor hooks (a parameter) is accumulated in place
/// (`GradNode.accumulateFused`): its existing `.grad` is moved to the fresh leaf before the
/// recomputed backward and moved back after it, so a fused op inside (`Tensor.linear`'s
/// `grad += gᵀx`) adds straight into it and no parameter-sized temporary is made — what
/// micro-batching with checkpointing needs. The sum is the same; only the order of the
/// additions differs from returning the contribution (equal up to rounding).
///
/// Every tensor `f` uses that needs a gradient must be in `inputs`: a tensor `f` captures
/// from outside is treated as a constant and gets no gradient. (The module form,
/// `checkpoint(_:_:)` in Layers, passes a module's parameters for you.) Gradients equal
/// those of the plain computation bitwise when the ops inside are deterministic, which
/// Loom's CPU kernels are for a fixed thread count.
///
/// The recomputation runs under the first run's memory tag, `Memory.owner` and autocast
/// policy, so it allocates, is charged and rounds exactly as the first run did.
///
/// Memory: the node keeps `inputs` (views of them, no copies); everything `f` allocated
/// beyond its output is freed when the first run returns. Cost: one extra forward of `f`.
public func checkpoint(_ inputs: [Tensor], preserveRNGState: Bool = true,
                       _ f: @escaping ([Tensor]) -> Tensor) -> Tensor {
    guard GradMode.isEnabled, inputs.contains(where: { $0.gradNode != nil }) else { return f(inputs) }
    let rngBefore = preserveRNGState ? Generator.default.currentState : nil
    let tag = Memory.currentTag, owner = Memory.owner  // recomputed tensors are charged like the first run's
    let autocast = Autocast.policy  // and computed in the same precision
    let constants = inputs.map { $0.detached() }
    let output = noGrad { f(constants) }
    let needsGrad = inputs.map { $0.gradNode != nil }
    return output.recording("checkpoint", inputs: inputs) { gradient in
        // Fresh leaves over the same storage: the recomputed graph ends at them.
        let leaves = constants.enumerated().map { i, t in needsGrad[i] ? t.requiringGrad() : t }
        let rngAfter = Generator.default.currentState
        if let rngBefore { Generator.default.currentState = rngBefore }
        let recomputed = GradMode.$isRecomputing.withValue(true) {
            Memory.$owner.withValue(owner) { Memory.withTag(tag) { enableGrad { withAutocast(autocast) { f(leaves) } } } }
        }
        if rngBefore != nil { Generator.default.currentState = rngAfter }
        precondition(recomputed.shape == gradient.shape,
                     "checkpoint: the recomputation returned shape \(shapeString(recomputed.shape)), the first run \(shapeString(gradient.shape)); the segment must be a function of its inputs")
        // Leaf inputs whose `.grad` is accumulated in place (each node once).
        var seen: Set<ObjectIdentifier> = []
        let inPlace = inputs.indices.filter { i in
            guard needsGrad[i], let node = inputs[i].gradNode, node.isLeaf else { return false }
            return seen.insert(ObjectIdentifier(node)).inserted
        }
        var fused = Array(repeating: false, count: inputs.count)
        for i in inPlace {
            guard let existing = inputs[i].gradNode!.takeForFusion() else { continue }
            var leaf = leaves[i]
            leaf.grad = existing  // the only reference: fused ops inside write in place
            fused[i] = true
        }
        if recomputed.gradNode != nil {
            BackwardEngine.run(roots: [(recomputed.gradNode!, gradient)], retainGraph: false)
        }
        for i in inPlace where fused[i] {
            var leaf = leaves[i]
            let total = leaf.grad ?? Tensor.zeros(leaf.shape, dtype: leaf.dtype)
            leaf.grad = nil
            inputs[i].gradNode!.putFused(total)
        }
        return leaves.enumerated().map { i, leaf in
            needsGrad[i] && !fused[i] ? (leaf.grad ?? Tensor.zeros(leaf.shape, dtype: leaf.dtype)) : nil
        }
    }
}
