/// Whether ops record onto the autograd tape on the current task/thread.
public enum GradMode {
    @TaskLocal public static var isEnabled: Bool = true
    /// True while gradient checkpointing re-runs a segment's forward during backward.
    /// Layers with side effects in forward (BatchNorm's running statistics) skip them
    /// then, so a checkpointed step updates them once, as an ordinary step does.
    @TaskLocal public static var isRecomputing: Bool = false
}

/// Runs `body` without recording autograd history (like `torch.no_grad()`).
@discardableResult
public func noGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$isEnabled.withValue(false) { try body() }
}

/// Runs `body` with autograd recording on, even inside a `noGrad` scope.
@discardableResult
public func enableGrad<R>(_ body: () throws -> R) rethrows -> R {
    try GradMode.$isEnabled.withValue(true) { try body() }
}
