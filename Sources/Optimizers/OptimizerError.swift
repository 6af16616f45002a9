/// Errors from bad optimizer input: hyperparameters and saved optimizer state.
///
/// Messages name the bad value and what was expected, e.g.
/// `sgd: momentum 1.5: expected a value in [0, 1)` or
/// `loadStateDict: key '3.exp_avg': expected shape [64, 3], found [96, 3]`.
public struct OptimizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What went wrong.
    public enum Kind: String, Sendable {
        /// A hyperparameter (learning rate, beta, epsilon, ...) is out of range.
        case argument
        /// A state dictionary does not match the optimizer (missing/extra key, shape, dtype).
        case stateDict
    }
    /// The category of the error.
    public let kind: Kind
    /// The constructor or function that rejected the input (`sgd`, `cosine`, `loadStateDict`).
    public let op: String
    /// What was wrong: the bad value and what was expected.
    public let message: String

    /// An error of `kind` raised by `op`.
    public init(_ kind: Kind, op: String, _ message: String) {
        self.kind = kind
        self.op = op
        self.message = message
    }

    /// `op: message`.
    public var description: String { "\(op): \(message)" }
}

// MARK: - Validation helpers shared by transformations, aliases and schedules

enum Check {
    /// A positive, finite learning rate.
    static func learningRate(_ lr: Double, op: String, name: String = "lr") throws(OptimizerError) {
        guard lr > 0, lr.isFinite else {
            throw OptimizerError(.argument, op: op, "\(name) \(lr): expected a positive, finite learning rate")
        }
    }

    /// A value in [0, 1) (momentum, betas).
    static func unitInterval(_ v: Double, op: String, name: String) throws(OptimizerError) {
        guard v >= 0, v < 1 else {
            throw OptimizerError(.argument, op: op, "\(name) \(v): expected a value in [0, 1)")
        }
    }

    /// A positive, finite value (eps, maxNorm, factors).
    static func positive(_ v: Double, op: String, name: String) throws(OptimizerError) {
        guard v > 0, v.isFinite else {
            throw OptimizerError(.argument, op: op, "\(name) \(v): expected a positive, finite value")
        }
    }

    /// A non-negative, finite value (weight decay, final learning rates).
    static func nonNegative(_ v: Double, op: String, name: String) throws(OptimizerError) {
        guard v >= 0, v.isFinite else {
            throw OptimizerError(.argument, op: op, "\(name) \(v): expected a non-negative, finite value")
        }
    }

    /// A schedule whose first value is a positive, finite learning rate.
    static func schedule(_ s: LRSchedule, op: String) throws(OptimizerError) {
        let v = s(0)
        guard v > 0, v.isFinite else {
            throw OptimizerError(.argument, op: op, "lr schedule \(s) gives \(v) at step 0: expected a positive, finite learning rate")
        }
    }
}
