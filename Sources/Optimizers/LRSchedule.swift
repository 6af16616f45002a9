#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A learning-rate schedule: a pure function from the step count (0 for the first update)
/// to a learning rate.
///
/// Steps count optimizer updates, so a schedule given in epochs is built with
/// `steps = epochs * batchesPerEpoch`. Negative steps are treated as 0. The factories
/// throw `OptimizerError` for out-of-range arguments; a custom closure is not checked
/// until a transformation uses it.
public struct LRSchedule: Sendable, CustomStringConvertible {
    private let function: @Sendable (Int) -> Double
    /// A short text form, e.g. `cosine(initial: 0.1, totalSteps: 1000, final: 0.0)`.
    public let description: String

    /// A schedule computed by `function` (described as `description` in messages).
    public init(_ description: String = "custom", _ function: @escaping @Sendable (Int) -> Double) {
        self.description = description
        self.function = function
    }

    /// The learning rate for the update with index `step` (0-based).
    public func callAsFunction(_ step: Int) -> Double { function(Swift.max(step, 0)) }

    /// The same learning rate at every step.
    public static func constant(_ lr: Double) -> LRSchedule {
        LRSchedule("constant(\(lr))") { _ in lr }
    }

    /// `initial * gamma^floor(step / stepSize)`, like `torch.optim.lr_scheduler.StepLR`.
    ///
    /// Throws unless `initial` and `gamma` are positive and finite and `stepSize >= 1`.
    public static func stepDecay(initial: Double, stepSize: Int, gamma: Double = 0.1) throws(OptimizerError) -> LRSchedule {
        try Check.learningRate(initial, op: "stepDecay", name: "initial")
        try Check.positive(gamma, op: "stepDecay", name: "gamma")
        guard stepSize >= 1 else { throw OptimizerError(.argument, op: "stepDecay", "stepSize \(stepSize): expected at least 1") }
        return LRSchedule("stepDecay(initial: \(initial), stepSize: \(stepSize), gamma: \(gamma))") { step in
            initial * pow(gamma, Double(step / stepSize))
        }
    }

    /// Cosine annealing from `initial` to `final` over `totalSteps`, then `final`
    /// (`torch.optim.lr_scheduler.CosineAnnealingLR`'s closed form, without restarts):
    /// `final + (initial - final) * (1 + cos(pi * step / totalSteps)) / 2`.
    ///
    /// Throws unless `initial` is positive, `final` is non-negative (both finite) and
    /// `totalSteps >= 1`.
    public static func cosine(initial: Double, totalSteps: Int, final: Double = 0) throws(OptimizerError) -> LRSchedule {
        try Check.learningRate(initial, op: "cosine", name: "initial")
        try Check.nonNegative(final, op: "cosine", name: "final")
        guard totalSteps >= 1 else { throw OptimizerError(.argument, op: "cosine", "totalSteps \(totalSteps): expected at least 1") }
        return LRSchedule("cosine(initial: \(initial), totalSteps: \(totalSteps), final: \(final))") { step in
            if step >= totalSteps { return final }
            return final + (initial - final) * (1 + cos(Double.pi * Double(step) / Double(totalSteps))) / 2
        }
    }

    /// Linear warm-up over `steps` updates to `then(0)`, then `then(step - steps)`.
    ///
    /// During warm-up `lr(step) = then(0) * (step + 1) / steps`, so the first update already
    /// moves (`then(0) / steps`) and the last warm-up update uses `then(0)`. The wrapped
    /// schedule starts when warm-up ends. `steps == 0` gives `then` unchanged.
    /// Throws when `steps` is negative.
    public static func linearWarmup(steps: Int, then schedule: LRSchedule) throws(OptimizerError) -> LRSchedule {
        guard steps >= 0 else { throw OptimizerError(.argument, op: "linearWarmup", "steps \(steps): expected a non-negative count") }
        if steps == 0 { return schedule }
        return LRSchedule("linearWarmup(steps: \(steps), then: \(schedule))") { step in
            step < steps ? schedule(0) * Double(step + 1) / Double(steps) : schedule(step - steps)
        }
    }

    /// The one-cycle policy (Smith & Topin 2019) as `torch.optim.lr_scheduler.OneCycleLR`
    /// computes it with cosine annealing and two phases (no momentum cycling).
    ///
    /// The rate rises from `maxLR / divFactor` to `maxLR` at step `pctStart * totalSteps - 1`,
    /// then falls to `maxLR / divFactor / finalDivFactor` at step `totalSteps - 1`, each phase
    /// along `end + (start - end) * (1 + cos(pi * pct)) / 2`. Steps past the end keep the final
    /// rate (PyTorch raises there). Throws unless `maxLR`, `divFactor` and `finalDivFactor`
    /// are positive and finite, `totalSteps >= 1` and `pctStart` is in (0, 1).
    public static func oneCycle(maxLR: Double, totalSteps: Int, pctStart: Double = 0.3,
                                divFactor: Double = 25, finalDivFactor: Double = 1e4) throws(OptimizerError) -> LRSchedule {
        let op = "oneCycle"
        try Check.learningRate(maxLR, op: op, name: "maxLR")
        try Check.positive(divFactor, op: op, name: "divFactor")
        try Check.positive(finalDivFactor, op: op, name: "finalDivFactor")
        guard totalSteps >= 1 else { throw OptimizerError(.argument, op: op, "totalSteps \(totalSteps): expected at least 1") }
        guard pctStart > 0, pctStart < 1 else { throw OptimizerError(.argument, op: op, "pctStart \(pctStart): expected a value in (0, 1)") }
        let initialLR = maxLR / divFactor
        let minLR = initialLR / finalDivFactor
        let peakStep = pctStart * Double(totalSteps) - 1
        let lastStep = Double(totalSteps - 1)
        return LRSchedule("oneCycle(maxLR: \(maxLR), totalSteps: \(totalSteps), pctStart: \(pctStart), divFactor: \(divFactor), finalDivFactor: \(finalDivFactor))") { step in
            let s = Double(step)
            if s <= peakStep { return cosineAnneal(initialLR, maxLR, phaseFraction(s, from: 0, to: peakStep)) }
            return cosineAnneal(maxLR, minLR, phaseFraction(s, from: peakStep, to: lastStep))
        }
    }
}

/// Cosine interpolation from `start` (pct 0) to `end` (pct 1), as OneCycleLR's `_annealing_cos`.
private func cosineAnneal(_ start: Double, _ end: Double, _ pct: Double) -> Double {
    end + (start - end) / 2 * (cos(Double.pi * pct) + 1)
}

/// Where `step` lies between `a` and `b`, clamped to [0, 1] (1 for an empty interval).
private func phaseFraction(_ step: Double, from a: Double, to b: Double) -> Double {
    b > a ? Swift.min(Swift.max((step - a) / (b - a), 0), 1) : 1
}
