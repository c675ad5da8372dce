package config

import (
	"strings"
	"testing"
)

// TestRedisURLErrorHidesAPasswordParameter: the Sentinel forms carry the
// master's password as a query parameter (password=...). One with an
// unencoded '#' followed by a '%' that does not start an escape makes
// the URL unparseable, and the reason url.Parse gives quotes the escape
// ("invalid URL escape \"%K9\""), a piece of the password: the start-up
// error must not quote it, as it quotes nothing of a URL with user
// information.
func TestRedisURLErrorHidesAPasswordParameter(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{RedisSentinelScheme, RedisTLSSentinelScheme} {
		raw := scheme + "://s1:26379,s2:26379?master=mymaster&password=Pq7#Zx%K9w"
		_, err := FromEnv(envWithDatabase(map[string]string{"REDIS_URL": raw}))
		if err == nil {
			t.Errorf("REDIS_URL=%s: accepted", raw)
			continue
		}
		if !strings.Contains(err.Error(), "REDIS_URL") {
			t.Errorf("error %q does not name REDIS_URL", err)
		}
		for _, piece := range []string{"Pq7", "Zx", "%K9", "K9w"} {
			if strings.Contains(err.Error(), piece) {
				t.Errorf("REDIS_URL=%s: the error quotes %q, a piece of the password: %v", raw, piece, err)
			}
		}
	}
}
