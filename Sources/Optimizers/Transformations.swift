import TensorCore

// MARK: - Learning rate

/// Scales updates by minus the learning rate: `update = -lr(step) * u`.
///
/// `lr` is a schedule evaluated at the pre-update step count (0 on the first update), so
/// the first update uses `schedule(0)`, as a PyTorch scheduler stepped after each
/// `optimizer.step()` does. Stateless apart from the shared step counter.
public struct ScaleByLearningRate: GradientTransformation {
    /// Elementwise: each parameter's update uses only its own gradient, value and slots.
    public var isElementwise: Bool { true }

    /// Learning rate as a function of the step.
    public let schedule: LRSchedule

    /// Throws when the schedule's value at step 0 is not a positive, finite number.
    public init(_ schedule: LRSchedule) throws(OptimizerError) {
        try Check.schedule(schedule, op: "scaleByLearningRate")
        self.schedule = schedule
    }

    /// A constant learning rate; throws unless `lr` is positive and finite.
    public init(_ lr: Double) throws(OptimizerError) {
        try Check.learningRate(lr, op: "scaleByLearningRate")
        self.schedule = .constant(lr)
    }

    /// The state for `params` (see the type's documentation for its slots).
    /// An empty state (no slots) for `params`.
    public func initState(params: [Tensor]) -> OptimizerState { OptimizerState(parameterCount: params.count) }

    /// The updates for `grads` (see the type's documentation for the formula).
    public func update(grads: [Tensor], state: inout OptimizerState, params: [Tensor]) -> [Tensor] {
        checkUpdateArguments("scaleByLearningRate", grads: grads, params: params, state: state)
        let lr = schedule(state.step)
        precondition(lr >= 0 && lr.isFinite, "scaleByLearningRate: the schedule \(schedule) gives learning rate \(lr) at step \(state.step); expected a non-negative, finite value")
        state.step += 1
        return grads.map { $0 * (-lr) }
    }
}

/// Scales updates by `-lr` (a constant learning rate).
public func scaleByLearningRate(_ lr: Double) throws(OptimizerError) -> ScaleByLearningRate { try ScaleByLearningRate(lr) }

/// Scales updates by `-schedule(step)`.
public func scaleByLearningRate(_ schedule: LRSchedule) throws(OptimizerError) -> ScaleByLearningRate { try ScaleByLearningRate(schedule) }

// MARK: - Momentum

/// Heavy-ball momentum as in `torch.optim.SGD` with dampening 0.
///
/// `buf = beta * buf + u` (the buffer starts at zero, so the first step gives `buf = u`,
/// exactly PyTorch's `clone(grad)`), then the update is `buf`, or `u + beta * buf` with
/// Nesterov. State: one slot per parameter, named `"momentum"` unless told otherwise.
public struct TraceMomentum: GradientTransformation {
    /// Elementwise: each parameter's update uses only its own gradient, value and slots.
    public var isElementwise: Bool { true }

    /// The momentum coefficient (PyTorch's `momentum`).
    public let beta: Double
    /// Whether the update looks ahead: `u + beta * buf` instead of `buf`.
    public let nesterov: Bool
    /// The slot name (change it to use two momentum traces in one chain).
    public let slotName: String

    /// Throws unless `beta` is in [0, 1).
    public init(beta: Double, nesterov: Bool = false, slotName: String = "momentum") throws(OptimizerError) {
        try Check.unitInterval(beta, op: "traceMomentum", name: "beta")
        self.beta = beta
        self.nesterov = nesterov
        self.slotName = slotName
    }

    /// The state for `params` (see the type's documentation for its slots).
    public func initState(params: [Tensor]) -> OptimizerState {
        var s = OptimizerState(parameterCount: params.count)
        s.addZeroSlot(slotName, like: params)
        return s
    }

    /// The updates for `grads` (see the type's documentation for the formula).
    public func update(grads: [Tensor], state: inout OptimizerState, params: [Tensor]) -> [Tensor] {
        checkUpdateArguments("traceMomentum", grads: grads, params: params, state: state)
        var out: [Tensor] = []
        out.reserveCapacity(grads.count)
        for (i, g) in grads.enumerated() {
            out.append(state.withSlot(slotName, param: i) { buf -> Tensor in
                checkSlot("traceMomentum", slotName, buf, param: i, params[i])
                buf.mul_(beta)
                buf.add_(g)
                return nesterov ? g + buf * beta : buf
            })
        }
        state.step += 1
        return out
    }
}

/// Heavy-ball (or Nesterov) momentum with coefficient `beta`; see `TraceMomentum`.
public func traceMomentum(beta: Double, nesterov: Bool = false) throws(OptimizerError) -> TraceMomentum {
    try TraceMomentum(beta: beta, nesterov: nesterov)
}

// MARK: - Weight decay

/// Adds `weightDecay * param` to the updates.
///
/// Placed first in a chain this is L2 (coupled) weight decay, as `weight_decay` in
/// `torch.optim.SGD` and `torch.optim.Adam` (`grad += wd * param`). Placed after
/// `scaleByAdam` and before the learning rate, it is AdamW's decoupled weight decay
/// (Loshchilov & Hutter 2019): the step becomes `-lr * (adam + wd * param)`, the same as
/// PyTorch's `param *= 1 - lr * wd` followed by the Adam step. Stateless.
public struct AddDecayedWeights: GradientTransformation {
    /// Elementwise: each parameter's update uses only its own gradient, value and slots.
    public var isElementwise: Bool { true }

    /// The decay coefficient (PyTorch's `weight_decay`).
    public let weightDecay: Double

    /// Throws unless `weightDecay` is non-negative and finite.
    public init(_ weightDecay: Double) throws(OptimizerError) {
        try Check.nonNegative(weightDecay, op: "addDecayedWeights", name: "weightDecay")
        self.weightDecay = weightDecay
    }

    /// The state for `params` (see the type's documentation for its slots).
    /// An empty state (no slots) for `params`.
    public func initState(params: [Tensor]) -> OptimizerState { OptimizerState(parameterCount: params.count) }

    /// The updates for `grads` (see the type's documentation for the formula).
    public func update(grads: [Tensor], state: inout OptimizerState, params: [Tensor]) -> [Tensor] {
        checkUpdateArguments("addDecayedWeights", grads: grads, params: params, state: state)
        state.step += 1
        if weightDecay == 0 { return grads }
        // wd·p + g, accumulated in place: one parameter-sized temporary, not two (the
        // same bits as g + wd·p: IEEE addition is commutative).
        return zip(grads, params).map { g, p in
            var u = p.detached() * weightDecay
            u.add_(g)
            return u
        }
    }
}

/// Adds `weightDecay * param` to the updates; see `AddDecayedWeights`.
public func addDecayedWeights(_ weightDecay: Double) throws(OptimizerError) -> AddDecayedWeights {
    try AddDecayedWeights(weightDecay)
}

// MARK: - Adam

/// Adam's rescaling with bias correction (Kingma & Ba 2015), in `torch.optim.Adam`'s form.
///
/// With `t = step + 1`:
/// `m = lerp(m, u, 1 - b1)`, `v = b2 * v + (1 - b2) * u * u`,
/// `update = (m / (sqrt(v) / sqrt(1 - b2^t) + eps)) / (1 - b1^t)`.
/// Follow it with `scaleByLearningRate` to get `-lr * update`. State: slots `"exp_avg"` (m)
/// and `"exp_avg_sq"` (v) per parameter, PyTorch's names.
public struct ScaleByAdam: GradientTransformation {
    /// Elementwise: each parameter's update uses only its own gradient, value and slots.
    public var isElementwise: Bool { true }

    /// Decay rate of the first moment (PyTorch's `betas[0]`).
    public let b1: Double
    /// Decay rate of the second moment (PyTorch's `betas[1]`).
    public let b2: Double
    /// Added to the bias-corrected root of the second moment.
    public let eps: Double

    /// Throws unless `b1` and `b2` are in [0, 1) and `eps` is positive and finite.
    public init(b1: Double = 0.9, b2: Double = 0.999, eps: Double = 1e-8) throws(OptimizerError) {
        try Check.unitInterval(b1, op: "scaleByAdam", name: "b1")
        try Check.unitInterval(b2, op: "scaleByAdam", name: "b2")
        try Check.positive(eps, op: "scaleByAdam", name: "eps")
        self.b1 = b1
        self.b2 = b2
        self.eps = eps
    }

    /// The state for `params` (see the type's documentation for its slots).
    public func initState(params: [Tensor]) -> OptimizerState {
        var s = OptimizerState(parameterCount: params.count)
        s.addZeroSlot("exp_avg", like: params)
        s.addZeroSlot("exp_avg_sq", like: params)
        return s
    }

    /// The updates for `grads` (see the type's documentation for the formula).
    public func update(grads: [Tensor], state: inout OptimizerState, params: [Tensor]) -> [Tensor] {
        checkUpdateArguments("scaleByAdam", grads: grads, params: params, state: state)
        let t = Double(state.step + 1)
        let biasCorrection1 = 1 - power(b1, t)
        let biasCorrection2Sqrt = (1 - power(b2, t)).squareRoot()
        let weight = 1 - b1
        var out: [Tensor] = []
        out.reserveCapacity(grads.count)
        for (i, g) in grads.enumerated() {
            // m = lerp(m, g, 1 - b1), written as ATen's lerp kernel evaluates it.
            let m: Tensor = state.withSlot("exp_avg", param: i) { m in
                checkSlot("scaleByAdam", "exp_avg", m, param: i, params[i])
                if weight < 0.5 {
                    var d = g - m
                    d.mul_(weight)
                    m.add_(d)
                } else {
                    m = g - (g - m) * (1 - weight)
                }
                return m
            }
            // v = b2 * v + (1 - b2) * g * g  (addcmul)
            let v: Tensor = state.withSlot("exp_avg_sq", param: i) { v in
                checkSlot("scaleByAdam", "exp_avg_sq", v, param: i, params[i])
                v.mul_(b2)
                v.add_(g * (1 - b2) * g)
                return v
            }
            var denom = v.sqrt()
            denom.div_(denom.scalarLike(biasCorrection2Sqrt))
            denom.add_(eps)
            var u = m / denom
            u.div_(u.scalarLike(biasCorrection1))
            out.append(u)
        }
        state.step += 1
        return out
    }
}

/// Adam's rescaling with bias correction; see `ScaleByAdam`.
public func scaleByAdam(b1: Double = 0.9, b2: Double = 0.999, eps: Double = 1e-8) throws(OptimizerError) -> ScaleByAdam {
    try ScaleByAdam(b1: b1, b2: b2, eps: eps)
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `x` raised to `y` with the C library's `pow`, as Python's `beta ** step` in PyTorch's Adam.
@inline(__always)
func power(_ x: Double, _ y: Double) -> Double { pow(x, y) }

// MARK: - Clipping

/// The Euclidean norm of all elements of `tensors` together: `sqrt(Σ_i ‖t_i‖²)`.
///
/// Each tensor's norm is computed in its dtype (as `torch.nn.utils.clip_grad_norm_` does);
/// they are combined in Double. O(total elements).
public func globalNorm(_ tensors: [Tensor]) -> Double {
    var sumSquares = 0.0
    for t in tensors where t.count > 0 {
        let n = noGrad { t.detached().norm().item() }
        sumSquares += n * n
    }
    return sumSquares.squareRoot()
}

/// Rescales all updates together so that their global norm is at most `maxNorm`, as
/// `torch.nn.utils.clip_grad_norm_` does.
///
/// `coef = maxNorm / (globalNorm + 1e-6)`; when `coef < 1` every update is multiplied by
/// it, otherwise the updates pass through unchanged (bit for bit). A non-finite norm gives
/// a non-finite coefficient, which is applied (PyTorch's behaviour without
/// `error_if_nonfinite`). Put it first in a chain to clip raw gradients. Stateless.
public struct ClipByGlobalNorm: GradientTransformation {
    /// The largest global norm let through.
    public let maxNorm: Double

    /// Throws unless `maxNorm` is positive and finite.
    public init(maxNorm: Double) throws(OptimizerError) {
        try Check.positive(maxNorm, op: "clipByGlobalNorm", name: "maxNorm")
        self.maxNorm = maxNorm
    }

    /// The state for `params` (see the type's documentation for its slots).
    /// An empty state (no slots) for `params`.
    public func initState(params: [Tensor]) -> OptimizerState { OptimizerState(parameterCount: params.count) }

    /// The updates for `grads` (see the type's documentation for the formula).
    public func update(grads: [Tensor], state: inout OptimizerState, params: [Tensor]) -> [Tensor] {
        checkUpdateArguments("clipByGlobalNorm", grads: grads, params: params, state: state)
        state.step += 1
        let coef = maxNorm / (globalNorm(grads) + 1e-6)
        if coef.isFinite && coef >= 1 { return grads }
        return grads.map { $0 * coef }
    }
}

/// Clips updates to global norm `maxNorm`; see `ClipByGlobalNorm`.
public func clipByGlobalNorm(_ maxNorm: Double) throws(OptimizerError) -> ClipByGlobalNorm {
    try ClipByGlobalNorm(maxNorm: maxNorm)
}
