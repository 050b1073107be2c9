package main

import (
	"database/sql"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
)

// Test hooks, active only with ANQICMS_STANDIN_HOOKS=1.

var (
	heldMu   sync.Mutex
	held     [][]byte
	heldMiB  int
	leakStop chan struct{}
	leakDone chan struct{}
)

const maxHookMiB = 1 << 20

// holdMiB allocates n MiB, touches every page and keeps it reachable.
func holdMiB(n int) int {
	b := make([]byte, n<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	heldMu.Lock()
	defer heldMu.Unlock()
	held = append(held, b)
	heldMiB += n
	return heldMiB
}

func (a *App) startHooks() {
	if n := envInt("STANDIN_HOLD_MIB"); n > 0 && n <= maxHookMiB {
		log.Printf("hook: holding %d MiB", holdMiB(n))
	}
	if n := envInt("STANDIN_CHILDREN"); n > 0 {
		child := filepath.Join(a.execDir, "source", "cwebp_linux_amd64")
		for i := 0; i < n && i < 64; i++ {
			cmd := exec.Command(child, "-standin-child")
			cmd.Dir = a.execDir
			if err := cmd.Start(); err != nil {
				a.logError("hook: cannot start child %s: %v", child, err)
				break
			}
			log.Printf("hook: started child %d", cmd.Process.Pid)
			go func() { _ = cmd.Wait() }()
		}
	}
}

// stopLeak stops the running leak, if any, and waits until it has stopped growing.
func stopLeak() {
	heldMu.Lock()
	stop, done := leakStop, leakDone
	leakStop, leakDone = nil, nil
	heldMu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

func queryInt(r *http.Request, name string, min, max int) (int, error) {
	v, err := strconv.Atoi(r.URL.Query().Get(name))
	if err != nil || v < min || v > max {
		return 0, fmt.Errorf("query parameter %s must be an integer from %d to %d", name, min, max)
	}
	return v, nil
}

func (a *App) serveHook(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/__test/alloc":
		n, err := queryInt(r, "mib", 1, maxHookMiB)
		if err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, apiReply{Data: map[string]int{"held_mib": holdMiB(n)}})
	case "/__test/leak":
		stopLeak()
		if r.URL.Query().Get("stop") == "1" {
			writeJSON(w, http.StatusOK, apiReply{Msg: "leak stopped"})
			return
		}
		n, err := queryInt(r, "mib", 1, 4096)
		if err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		every, err := queryInt(r, "every_ms", 1, 3600000)
		if err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		stop, done := make(chan struct{}), make(chan struct{})
		heldMu.Lock()
		leakStop, leakDone = stop, done
		heldMu.Unlock()
		go func() {
			defer close(done)
			t := time.NewTicker(time.Duration(every) * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					holdMiB(n)
				}
			}
		}()
		writeJSON(w, http.StatusOK, apiReply{Msg: "leak started"})
	case "/__test/sleep":
		n, err := queryInt(r, "seconds", 0, 3600)
		if err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		select {
		case <-time.After(time.Duration(n) * time.Second):
			writeJSON(w, http.StatusOK, apiReply{Msg: "slept", Data: map[string]int{"seconds": n}})
		case <-r.Context().Done():
		}
	case "/__test/runtime":
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heldMu.Lock()
		h := heldMiB
		heldMu.Unlock()
		writeJSON(w, http.StatusOK, apiReply{Data: map[string]interface{}{
			"pid": os.Getpid(), "held_mib": h, "heap_alloc": ms.HeapAlloc, "heap_sys": ms.HeapSys, "sys": ms.Sys,
			"num_gc": ms.NumGC, "gomemlimit": debug.SetMemoryLimit(-1), "goroutines": runtime.NumGoroutine(),
		}})
	case "/__test/db", "/__test/dbsleep":
		a.serveDBHook(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (a *App) serveDBHook(w http.ResponseWriter, r *http.Request) {
	if !a.isInstalled() {
		apiError(w, http.StatusConflict, "not installed")
		return
	}
	site := a.siteFor(r.Host, r.Header.Get("X-Host"))
	if site.DB == nil {
		apiError(w, http.StatusServiceUnavailable, "site has no database")
		return
	}
	if r.URL.Path == "/__test/dbsleep" {
		n, err := queryInt(r, "seconds", 0, 600)
		if err != nil {
			apiError(w, http.StatusBadRequest, err.Error())
			return
		}
		var v int
		if err = site.DB.QueryRowContext(r.Context(), "SELECT SLEEP(?)", n).Scan(&v); err != nil {
			apiError(w, http.StatusInternalServerError, "database error: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, apiReply{Data: map[string]int{"seconds": n}})
		return
	}
	var charset string
	var now interface{}
	var conn sql.NullInt64
	err := site.DB.QueryRowContext(r.Context(), "SELECT @@character_set_connection, NOW(), CONNECTION_ID()").Scan(&charset, &now, &conn)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "database error: "+err.Error())
		return
	}
	loc := ""
	if t, ok := now.(time.Time); ok {
		loc = t.Location().String()
	}
	st := site.DB.Stats()
	site.cacheMu.Lock()
	entries := len(site.cache)
	site.cacheMu.Unlock()
	writeJSON(w, http.StatusOK, apiReply{Data: map[string]interface{}{
		"site_id": site.ID, "cache_entries": entries, "max_open_connections": st.MaxOpenConnections, "open_connections": st.OpenConnections,
		"in_use": st.InUse, "idle": st.Idle, "max_idle_closed": st.MaxIdleClosed, "max_lifetime_closed": st.MaxLifetimeClosed,
		"max_idle_setting": poolMaxIdle, "max_lifetime_seconds": int(poolMaxLifetime / time.Second),
		"charset": charset, "now_type": fmt.Sprintf("%T", now), "now_location": loc,
	}})
}
