package fair

// HeartbeatHealed is Dispatcher.Heartbeat, returning what the beat
// repaired (heal in scripts.go).
var HeartbeatHealed = (*Dispatcher).heartbeat
