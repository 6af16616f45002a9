/// Errors of data-parallel training: each names the rank, step or parameter concerned.
public struct DataParallelError: Error, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
