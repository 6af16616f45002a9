import TensorCore

/// A gradient transformation together with its state, applied to parameters in place.
///
/// ```swift
/// var params = model.parameters()            // leaves that require grad
/// var opt = Optimizer(try sgd(lr: 0.01, momentum: 0.9, weightDecay: 5e-4), params: params)
/// loss.backward()
/// opt.step(&params)                          // param += update, in place
/// opt.zeroGrad(params)
/// try save(opt.stateDict())                  // "0.momentum", ..., "step"
/// ```
///
/// `step` reads each parameter's `.grad`; parameters without a gradient are skipped, as
/// PyTorch skips them (their slots are left as they are). The shared step counter is
/// global: a parameter that missed some steps uses the global count for Adam's bias
/// correction, where PyTorch keeps a count per parameter. Updates are computed under
/// `noGrad` with allocations charged to `MemoryTag.optimizerState`, and are added with
/// `add_`, which writes into the parameter's storage (when it is not shared) and keeps its
/// leaf `GradNode`, so gradient hooks registered on parameters survive the update.
public struct Optimizer: Sendable {
    /// The update rule.
    public let transformation: any GradientTransformation
    /// The current state (slots and step counter).
    public private(set) var state: OptimizerState

    /// An optimizer for `params` (their count, shapes and dtypes fix the state's layout).
    public init(_ transformation: any GradientTransformation, params: [Tensor]) {
        self.transformation = transformation
        let detached = params.map { $0.detached() }
        self.state = Memory.withTag(.optimizerState) { transformation.initState(params: detached) }
    }

    /// Number of updates applied so far.
    public var stepCount: Int { state.step }

    /// The learning rate the next step will use: the schedule of the first
    /// `ScaleByLearningRate` in the transformation (searching chains depth-first) at the
    /// current step; nil when there is none. For progress bars and run logs.
    public var learningRate: Double? {
        func find(_ t: any GradientTransformation) -> ScaleByLearningRate? {
            if let s = t as? ScaleByLearningRate { return s }
            if let c = t as? Chain {
                for m in c.transformations { if let s = find(m) { return s } }
            }
            return nil
        }
        return find(transformation).map { $0.schedule(state.step) }
    }

    /// Applies one update to every parameter that has a gradient: `param += update(grad)`.
    ///
    /// Does nothing (and does not count a step) when no parameter has a gradient. Traps
    /// when `params` does not match the parameters the optimizer was made for (count,
    /// shapes), naming the parameter index and the shapes.
    public mutating func step(_ params: inout [Tensor]) {
        precondition(params.count == state.parameterCount,
                     "Optimizer.step: \(params.count) parameters, the optimizer was made for \(state.parameterCount)")
        var indices: [Int] = []
        var grads: [Tensor] = []
        for i in params.indices {
            guard let g = params[i].grad else { continue }
            precondition(g.shape == params[i].shape,
                         "Optimizer.step: parameter \(i): gradient shape \(shapeString(g.shape)) does not match parameter shape \(shapeString(params[i].shape))")
            indices.append(i)
            grads.append(g.detached())
        }
        if indices.isEmpty { return }
        let before = state.step
        if transformation.isElementwise && indices.count > 1 {
            // One parameter at a time: the same arithmetic, but the temporaries of the
            // update (decayed gradient, new momentum, scaled step) exist for one parameter
            // at once, not for all of them (peak memory of the step).
            for (k, i) in indices.enumerated() {
                let u = computeUpdates(grads: [grads[k]], params: params, indices: [i])
                state.step = before
                precondition(u.count == 1 && u[0].shape == params[i].shape,
                             "Optimizer.step: parameter \(i): the transformation returned a bad update for shape \(shapeString(params[i].shape))")
                grads[k] = Tensor.zeros([0], dtype: grads[k].dtype)  // drop this reference to the gradient
                noGrad { params[i].add_(u[0]) }
            }
            state.step = before + 1
            return
        }
        let updates = computeUpdates(grads: grads, params: params, indices: indices)
        state.step = before + 1
        precondition(updates.count == indices.count,
                     "Optimizer.step: the transformation returned \(updates.count) updates for \(indices.count) parameters")
        noGrad {
            for (k, i) in indices.enumerated() {
                precondition(updates[k].shape == params[i].shape,
                             "Optimizer.step: parameter \(i): update shape \(shapeString(updates[k].shape)) does not match parameter shape \(shapeString(params[i].shape))")
                params[i].add_(updates[k])
            }
        }
    }

    /// The updates for the parameters at `indices`. A separate function so that the
    /// detached parameter values it hands to the transformation are released before the
    /// updates are added (otherwise `add_` would find the storage shared and copy it).
    private mutating func computeUpdates(grads: [Tensor], params: [Tensor], indices: [Int]) -> [Tensor] {
        let values = indices.map { params[$0].detached() }
        let transformation = self.transformation
        return noGrad {
            Memory.withTag(.optimizerState) {
                if indices.count == params.count {
                    return transformation.update(grads: grads, state: &state, params: values)
                }
                var sub = state.take(indices)
                let u = transformation.update(grads: grads, state: &sub, params: values)
                state.put(&sub, at: indices)
                return u
            }
        }
    }

    /// Clears the gradients of `params` (sets `.grad` to nil, PyTorch's default `set_to_none`).
    public func zeroGrad(_ params: [Tensor]) {
        for p in params { p.zeroGrad() }
    }

    /// The state as a flat dictionary (`"0.momentum"`, `"3.exp_avg"`, `"step"`), ready to be
    /// saved next to the model in a safetensors file.
    public func stateDict() -> [String: Tensor] { state.dictionary() }

    /// Restores a dictionary written by `stateDict()`; training then continues bit for bit.
    ///
    /// Throws, changing nothing, when a key is missing or unexpected, or a shape or dtype
    /// differs; the error names the key, the expected and the found value.
    public mutating func loadStateDict(_ dictionary: [String: Tensor]) throws(OptimizerError) {
        try state.load(dictionary)
    }
}
