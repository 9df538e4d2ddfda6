package stepline

import (
	"context"
	"math"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// apiKeyOrEnv is the key given, else STEPLINE_API_KEY (as the Python SDK does).
func apiKeyOrEnv(key string) string {
	if key != "" {
		return key
	}
	return os.Getenv("STEPLINE_API_KEY")
}

// bearer sends "authorization: Bearer <key>" on every call.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false: the coordinator serves plaintext gRPC.
func (bearer) RequireTransportSecurity() bool { return false }

// dial opens a channel to the coordinator; extra options (TLS credentials, ...) come last.
func dial(address, apiKey string, extra []grpc.DialOption) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The coordinator's own limit applies (Limits.max_message_bytes); take whatever it sends.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)),
		// Fast reconnects: the worker has its own backoff with jitter.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	}
	if key := apiKeyOrEnv(apiKey); key != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(key)))
	}
	return grpc.NewClient(address, append(opts, extra...)...)
}
