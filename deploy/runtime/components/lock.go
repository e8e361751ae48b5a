package components

import (
	"github.com/dapr/components-contrib/lock/redis"
	lockLoader "github.com/dapr/dapr/pkg/components/lock"
)

func init() {
	lockLoader.DefaultRegistry.RegisterComponent(redis.NewStandaloneRedisLock, "redis")
}
