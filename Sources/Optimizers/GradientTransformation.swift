import TensorCore

/// An optimizer building block: an init/update pair over a list of parameters (optax style).
///
/// `initState(params:)` makes the state (slots shaped like the parameters, step 0).
/// `update(grads:state:params:)` maps gradients to *updates*, the tensors that get **added**
/// to the parameters (`param += update`), so a descent step returns `-lr * direction`.
/// Transformations compose with `chain(...)`: each member turns the previous member's
/// output into its own.
///
/// Contract: `update` advances `state.step` by exactly one and reads the pre-update value
/// (0 on the first update) for schedules and bias corrections; `chain` and `Optimizer`
/// enforce this. `grads`, `params` and the state hold the same number of tensors, and
/// `grads[i]` has the shape and dtype of `params[i]` (checked with preconditions that name
/// the parameter index and both shapes). Updates are computed with Tensor ops; call it
/// under `noGrad` (as `Optimizer` does) so nothing is recorded.
public protocol GradientTransformation: Sendable {
    /// The initial state for `params` (slots are zeros shaped like each parameter).
    func initState(params: [Tensor]) -> OptimizerState
    /// The updates for `grads` (one per parameter, to be added to the parameters).
    func update(grads: [Tensor], state: inout OptimizerState, params: [Tensor]) -> [Tensor]
    /// Whether each parameter's update depends only on that parameter's gradient, value
    /// and state slots (true for SGD, momentum, weight decay, Adam, schedules; false for
    /// clipping by a global norm). `Optimizer` then updates one parameter at a time, so the
    /// step's temporaries are those of the largest parameter, not of all of them.
    var isElementwise: Bool { get }
}

extension GradientTransformation {
    /// Not known to be elementwise unless a transformation says so.
    public var isElementwise: Bool { false }
}

/// Traps unless `grads`, `params` and `state` agree in count, and each gradient matches its
/// parameter in shape and dtype.
func checkUpdateArguments(_ op: String, grads: [Tensor], params: [Tensor], state: OptimizerState) {
    precondition(grads.count == params.count, "\(op): \(grads.count) gradients for \(params.count) parameters")
    precondition(state.parameterCount == params.count,
                 "\(op): the optimizer state holds \(state.parameterCount) parameters, the update got \(params.count); make the state with initState(params:) for the same parameter list")
    for i in params.indices {
        precondition(grads[i].shape == params[i].shape,
                     "\(op): parameter \(i): gradient shape \(shapeString(grads[i].shape)) does not match parameter shape \(shapeString(params[i].shape))")
        precondition(grads[i].dtype == params[i].dtype,
                     "\(op): parameter \(i): gradient dtype \(grads[i].dtype) does not match parameter dtype \(params[i].dtype) (shape \(shapeString(params[i].shape)))")
    }
}

/// Traps unless `slot` has the shape of parameter `index`.
func checkSlot(_ op: String, _ name: String, _ slot: Tensor, param index: Int, _ param: Tensor) {
    precondition(slot.shape == param.shape && slot.dtype == param.dtype,
                 "\(op): parameter \(index): state slot '\(name)' has shape \(shapeString(slot.shape)) (\(slot.dtype)), the parameter \(shapeString(param.shape)) (\(param.dtype))")
}

// MARK: - Chain

/// Applies transformations one after another: each member's updates are the next member's
/// gradients (optax `chain`).
///
/// The state is the union of the members' slots (a slot name may be used by one member
/// only; `initState` traps on a clash) and one shared step counter: every member sees the
/// same pre-update `step`, and the chain advances it by one.
public struct Chain: GradientTransformation {
    /// The members, applied in order.
    public let transformations: [any GradientTransformation]

    /// A chain applying `transformations` in order (empty: the identity).
    public init(_ transformations: [any GradientTransformation]) {
        self.transformations = transformations
    }

    /// The union of the members' slots; traps when two members use the same slot name.
    public func initState(params: [Tensor]) -> OptimizerState {
        var state = OptimizerState(parameterCount: params.count)
        for t in transformations { state.merge(t.initState(params: params), op: "chain") }
        return state
    }

    /// Elementwise when every member is.
    public var isElementwise: Bool { transformations.allSatisfy(\.isElementwise) }

    /// Runs the members in order, each at the same pre-update step.
    public func update(grads: [Tensor], state: inout OptimizerState, params: [Tensor]) -> [Tensor] {
        checkUpdateArguments("chain", grads: grads, params: params, state: state)
        let step = state.step
        var updates = grads
        for t in transformations {
            state.step = step
            updates = t.update(grads: updates, state: &state, params: params)
            precondition(updates.count == params.count, "chain: a member returned \(updates.count) updates for \(params.count) parameters")
        }
        state.step = step + 1
        return updates
    }
}

/// Applies `transformations` in order (optax `chain`); see `Chain`.
public func chain(_ transformations: any GradientTransformation...) -> Chain { Chain(transformations) }

/// Applies `transformations` in order (optax `chain`); see `Chain`.
public func chain(_ transformations: [any GradientTransformation]) -> Chain { Chain(transformations) }
