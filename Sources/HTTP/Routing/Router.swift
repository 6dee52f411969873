public enum RouteMatch<Handler> {
    case found(Handler, parameters: [String: String], template: String)
    case methodNotAllowed(allowed: [String], template: String)
    case notFound
}

/// Maps method + path to a handler by templates such as `/v1/studies/{uid}`.
/// A `{name}` matches one non-empty segment; where templates overlap, the one
/// with a literal at the first differing segment wins; HEAD falls back to GET.
public struct Router<Handler: Sendable>: Sendable {
    private enum Segment: Sendable, Equatable {
        case literal(String)
        case parameter(String)
    }

    private struct Route: Sendable {
        var template: String
        var segments: [Segment]
        var handlers: [String: Handler]
    }

    private var routes: [Route] = []

    public init() {}

    public mutating func add(_ method: String, _ template: String, _ handler: Handler) {
        if let index = routes.firstIndex(where: { $0.template == template }) {
            routes[index].handlers[method] = handler
            return
        }
        let segments = Self.split(template).map { part -> Segment in
            if part.hasPrefix("{") && part.hasSuffix("}") && part.count > 2 {
                return .parameter(String(part.dropFirst().dropLast()))
            }
            return .literal(String(part))
        }
        routes.append(Route(template: template, segments: segments, handlers: [method: handler]))
    }

    public func match(method: String, path: String) -> RouteMatch<Handler> {
        let parts = Self.split(path)
        var candidates: [(route: Route, parameters: [String: String])] = []
        for route in routes where route.segments.count == parts.count {
            var parameters: [String: String] = [:]
            var matches = true
            for (segment, part) in zip(route.segments, parts) {
                switch segment {
                case .literal(let literal):
                    matches = literal == part
                case .parameter(let name):
                    matches = !part.isEmpty
                    parameters[name] = String(part)
                }
                if !matches { break }
            }
            if matches { candidates.append((route, parameters)) }
        }
        guard !candidates.isEmpty else { return .notFound }
        candidates.sort { Self.isMoreSpecific($0.route.segments, than: $1.route.segments) }
        for (route, parameters) in candidates {
            if let handler = route.handlers[method] ?? (method == "HEAD" ? route.handlers["GET"] : nil) {
                return .found(handler, parameters: parameters, template: route.template)
            }
        }
        let best = candidates[0].route
        var allowed = Set(best.handlers.keys)
        if allowed.contains("GET") { allowed.insert("HEAD") }
        return .methodNotAllowed(allowed: allowed.sorted(), template: best.template)
    }

    private static func split(_ path: String) -> [Substring] {
        Array(path.split(separator: "/", omittingEmptySubsequences: false).dropFirst())
    }

    private static func isMoreSpecific(_ a: [Segment], than b: [Segment]) -> Bool {
        for (x, y) in zip(a, b) {
            switch (x, y) {
            case (.literal, .parameter): return true
            case (.parameter, .literal): return false
            default: continue
            }
        }
        return false
    }
}
