/// Errors of the replay tables: each names the bad value and what was expected.
public struct ReplayError: Error, CustomStringConvertible, Equatable, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
