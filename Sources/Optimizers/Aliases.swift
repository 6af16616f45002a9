import TensorCore

// The named optimizers: chains of the building blocks whose update rules are PyTorch's,
// term for term. State slot names are PyTorch's too ("momentum", "exp_avg", "exp_avg_sq").

/// Stochastic gradient descent as `torch.optim.SGD` (dampening 0).
///
/// Per step, with `g` the gradient: `g += weightDecay * param`; with momentum,
/// `buf = momentum * buf + g` (first step `buf = g`) and `g = nesterov ? g + momentum * buf : buf`;
/// then `param -= lr * g`. The chain is `addDecayedWeights(weightDecay)`,
/// `traceMomentum(beta: momentum, nesterov:)` (omitted when `momentum == 0`, so plain SGD
/// keeps no state) and `scaleByLearningRate(lr)`. The AlexNet recipe is
/// `sgd(lr: 0.01, momentum: 0.9, weightDecay: 5e-4)`.
///
/// Throws when the learning rate is not positive and finite (at step 0 for a schedule),
/// `momentum` is outside [0, 1), `weightDecay` is negative, or `nesterov` is set without momentum.
public func sgd(lr: LRSchedule, momentum: Double = 0, nesterov: Bool = false, weightDecay: Double = 0) throws(OptimizerError) -> Chain {
    let op = "sgd"
    try Check.schedule(lr, op: op)
    try Check.unitInterval(momentum, op: op, name: "momentum")
    try Check.nonNegative(weightDecay, op: op, name: "weightDecay")
    guard !nesterov || momentum > 0 else {
        throw OptimizerError(.argument, op: op, "nesterov requires a momentum in (0, 1), got momentum \(momentum)")
    }
    var members: [any GradientTransformation] = []
    if weightDecay > 0 { members.append(try AddDecayedWeights(weightDecay)) }
    if momentum > 0 { members.append(try TraceMomentum(beta: momentum, nesterov: nesterov)) }
    members.append(try ScaleByLearningRate(lr))
    return Chain(members)
}

/// SGD with a constant learning rate; see `sgd(lr: LRSchedule, ...)`.
public func sgd(lr: Double, momentum: Double = 0, nesterov: Bool = false, weightDecay: Double = 0) throws(OptimizerError) -> Chain {
    try Check.learningRate(lr, op: "sgd")
    return try sgd(lr: .constant(lr), momentum: momentum, nesterov: nesterov, weightDecay: weightDecay)
}

/// Adam as `torch.optim.Adam` (Kingma & Ba 2015), with L2 (coupled) weight decay.
///
/// Per step `t` (1-based): `g += weightDecay * param`; `m = lerp(m, g, 1 - b1)`;
/// `v = b2 * v + (1 - b2) * g²`; `param -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.
/// The chain is `addDecayedWeights(weightDecay)` (when > 0), `scaleByAdam(b1:b2:eps:)`,
/// `scaleByLearningRate(lr)`.
///
/// Throws when the learning rate is not positive and finite, a beta is outside [0, 1),
/// `eps` is not positive, or `weightDecay` is negative.
public func adam(lr: LRSchedule, b1: Double = 0.9, b2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0) throws(OptimizerError) -> Chain {
    let op = "adam"
    try checkAdamArguments(op, lr: lr, b1: b1, b2: b2, eps: eps, weightDecay: weightDecay)
    var members: [any GradientTransformation] = []
    if weightDecay > 0 { members.append(try AddDecayedWeights(weightDecay)) }
    members.append(try ScaleByAdam(b1: b1, b2: b2, eps: eps))
    members.append(try ScaleByLearningRate(lr))
    return Chain(members)
}

/// Adam with a constant learning rate; see `adam(lr: LRSchedule, ...)`.
public func adam(lr: Double = 1e-3, b1: Double = 0.9, b2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0) throws(OptimizerError) -> Chain {
    try Check.learningRate(lr, op: "adam")
    return try adam(lr: .constant(lr), b1: b1, b2: b2, eps: eps, weightDecay: weightDecay)
}

/// AdamW as `torch.optim.AdamW` (Loshchilov & Hutter 2019): Adam with decoupled weight decay.
///
/// PyTorch does `param *= 1 - lr * weightDecay`, then the Adam step without weight decay
/// in the gradient; the chain `scaleByAdam(b1:b2:eps:)`, `addDecayedWeights(weightDecay)`,
/// `scaleByLearningRate(lr)` gives the same update, `-lr * (adam + weightDecay * param)`,
/// with the scheduled `lr` scaling the decay as in PyTorch. PyTorch's default decay is 0.01.
///
/// Throws as `adam` does.
public func adamW(lr: LRSchedule, b1: Double = 0.9, b2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 1e-2) throws(OptimizerError) -> Chain {
    let op = "adamW"
    try checkAdamArguments(op, lr: lr, b1: b1, b2: b2, eps: eps, weightDecay: weightDecay)
    var members: [any GradientTransformation] = [try ScaleByAdam(b1: b1, b2: b2, eps: eps)]
    if weightDecay > 0 { members.append(try AddDecayedWeights(weightDecay)) }
    members.append(try ScaleByLearningRate(lr))
    return Chain(members)
}

/// AdamW with a constant learning rate; see `adamW(lr: LRSchedule, ...)`.
public func adamW(lr: Double = 1e-3, b1: Double = 0.9, b2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 1e-2) throws(OptimizerError) -> Chain {
    try Check.learningRate(lr, op: "adamW")
    return try adamW(lr: .constant(lr), b1: b1, b2: b2, eps: eps, weightDecay: weightDecay)
}

private func checkAdamArguments(_ op: String, lr: LRSchedule, b1: Double, b2: Double, eps: Double, weightDecay: Double) throws(OptimizerError) {
    try Check.schedule(lr, op: op)
    try Check.unitInterval(b1, op: op, name: "b1")
    try Check.unitInterval(b2, op: op, name: "b2")
    try Check.positive(eps, op: op, name: "eps")
    try Check.nonNegative(weightDecay, op: op, name: "weightDecay")
}
