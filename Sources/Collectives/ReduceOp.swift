/// The elementwise reduction of allReduce / reduceScatter.
public enum ReduceOp: String, Sendable, CaseIterable {
    case sum, product, max, min, average
}
