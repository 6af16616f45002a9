import Foundation
import GRPCNIOTransportHTTP2
import NIOSSL

/// TLS material of a replay server: a PEM certificate chain (leaf first) and its PEM
/// private key, read and checked when loaded so a bad file fails at start with its path.
public struct ReplayServerTLS: Sendable {
    /// The certificate chain, PEM bytes.
    public let certificateChainPEM: [UInt8]
    /// The private key, PEM bytes.
    public let privateKeyPEM: [UInt8]

    /// Reads `certificatePath` and `keyPath`; throws `TLSFileError` naming the file when
    /// it cannot be read or holds no PEM certificate / private key.
    public init(certificatePath: String, keyPath: String) throws {
        certificateChainPEM = try readPEM(certificatePath, what: "--tls-cert", expected: "a PEM certificate chain")
        privateKeyPEM = try readPEM(keyPath, what: "--tls-key", expected: "a PEM private key")
        do {
            let certs = try NIOSSLCertificate.fromPEMBytes(certificateChainPEM)
            guard !certs.isEmpty else { throw TLSFileError("--tls-cert \(certificatePath): expected a PEM certificate chain, found no certificate") }
        } catch let error as TLSFileError {
            throw error
        } catch {
            throw TLSFileError("--tls-cert \(certificatePath): expected a PEM certificate chain ('-----BEGIN CERTIFICATE-----'), could not parse it: \(error)")
        }
        do {
            _ = try NIOSSLPrivateKey(bytes: privateKeyPEM, format: .pem)
        } catch {
            throw TLSFileError("--tls-key \(keyPath): expected a PEM private key ('-----BEGIN PRIVATE KEY-----'), could not parse it: \(error)")
        }
    }

    /// The transport security for grpc-swift's server transport.
    public var transportSecurity: HTTP2ServerTransport.Posix.TransportSecurity {
        .tls(certificateChain: [.bytes(certificateChainPEM, format: .pem)],
             privateKey: .bytes(privateKeyPEM, format: .pem))
    }
}

/// TLS options of a replay client: the PEM trust roots that the server's certificate must
/// chain to (a self-signed server certificate is its own root), and whether the host
/// name (or IP address) must match the certificate.
public struct ReplayClientTLS: Sendable {
    /// Trust roots, PEM bytes.
    public let trustRootsPEM: [UInt8]
    /// Whether the certificate must name the host connected to (default true).
    public var verifyHostname: Bool

    /// Trust roots read from `trustRootsPath`; throws `TLSFileError` naming the file when it
    /// cannot be read or holds no PEM certificate.
    public init(trustRootsPath: String, verifyHostname: Bool = true) throws {
        trustRootsPEM = try readPEM(trustRootsPath, what: "trust roots", expected: "PEM certificates")
        do {
            guard try !NIOSSLCertificate.fromPEMBytes(trustRootsPEM).isEmpty else {
                throw TLSFileError("trust roots \(trustRootsPath): expected PEM certificates, found none")
            }
        } catch let error as TLSFileError {
            throw error
        } catch {
            throw TLSFileError("trust roots \(trustRootsPath): expected PEM certificates, could not parse them: \(error)")
        }
        self.verifyHostname = verifyHostname
    }

    /// The transport security for grpc-swift's client transport.
    public var transportSecurity: HTTP2ClientTransport.Posix.TransportSecurity {
        .tls { config in
            config.trustRoots = .certificates([.bytes(trustRootsPEM, format: .pem)])
            config.serverCertificateVerification = verifyHostname ? .fullVerification : .noHostnameVerification
        }
    }
}

/// A TLS file that cannot be read or parsed; the message names the file and what was
/// expected.
public struct TLSFileError: Error, CustomStringConvertible {
    /// What went wrong.
    public let message: String
    init(_ message: String) { self.message = message }
    public var description: String { message }
}

private func readPEM(_ path: String, what: String, expected: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw TLSFileError("\(what) \(path): cannot read the file; expected \(expected)")
    }
    return Array(data)
}
