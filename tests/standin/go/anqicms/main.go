// Command anqicms is a test stand-in with the process contract of AnQiCMS 3.5.8.
//
// It reproduces start-up, configuration, install, multi-site routing, the DB pools,
// signal handling and the memory behaviour that matter to operations; it is not a CMS.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const appVersion = "3.5.8"

// MysqlConfig is the "mysql" section of config.json and the JSON in websites.mysql.
type MysqlConfig struct {
	Database   string `json:"database"`
	User       string `json:"user"`
	Password   string `json:"password"`
	Host       string `json:"host"`
	Port       int    `json:"port"`
	UseDefault bool   `json:"use_default"`
}

// ServerConfig is the "server" section of config.json.
type ServerConfig struct {
	Env      string `json:"env"`
	Port     int    `json:"port"`
	LogLevel string `json:"log_level"`
}

// ServerJSON is the whole of config.json; nothing else is read or written.
type ServerJSON struct {
	Mysql  MysqlConfig  `json:"mysql"`
	Server ServerConfig `json:"server"`
}

// App is the process state.
type App struct {
	execDir string
	exePath string
	port    int
	hooks   bool

	mu        sync.RWMutex
	conf      ServerJSON
	installed bool
	sites     []*Site
	def       *Site

	installMu  sync.Mutex
	envInstall bool
	server     *http.Server
}

var errLogMu sync.Mutex

// logError writes to stderr and appends to error.log next to the executable.
func (a *App) logError(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	log.Print("ERROR " + msg)
	errLogMu.Lock()
	defer errLogMu.Unlock()
	f, err := os.OpenFile(filepath.Join(a.execDir, "error.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().Format("2006-01-02 15:04:05"), msg)
}

func (a *App) fatal(code int, format string, args ...interface{}) {
	a.logError(format, args...)
	os.Exit(code)
}

func (a *App) configPath() string { return filepath.Join(a.execDir, "config.json") }

// writeConfig rewrites config.json the way the real app does: json.MarshalIndent with a
// tab indent, created with mode 0666 (minus umask), known keys only.
func (a *App) writeConfig(conf ServerJSON) error {
	buf, err := json.MarshalIndent(conf, "", "\t")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(a.configPath(), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return err
	}
	if _, err = f.Write(buf); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func resolveExecutable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}

// killSamePath SIGKILLs every other process whose command line contains our executable path.
func killSamePath(exePath string) {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(raw) == 0 {
			continue
		}
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(raw), "\x00", " "))
		if strings.Contains(cmdline, exePath) {
			log.Printf("killing process %d running the same executable: %s", pid, cmdline)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func portAnswers(port int) bool {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func envInt(name string) int {
	v, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		return 0
	}
	return v
}

func main() {
	log.SetOutput(os.Stdout)
	log.SetFlags(log.LstdFlags)
	a := &App{hooks: os.Getenv("ANQICMS_STANDIN_HOOKS") == "1"}
	exe, err := resolveExecutable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot resolve executable:", err)
		os.Exit(255)
	}
	a.exePath = exe
	a.execDir = filepath.Dir(exe)

	// config.json is read before anything else; an invalid file is fatal.
	a.conf = ServerJSON{Server: ServerConfig{Env: "production", Port: 8001, LogLevel: "error"}}
	if raw, err := os.ReadFile(a.configPath()); err == nil {
		var c ServerJSON
		if err := json.Unmarshal(raw, &c); err != nil {
			a.fatal(255, "Invalid Config %s: %v", a.configPath(), err)
		}
		if c.Server.Port == 0 {
			c.Server.Port = 8001
		}
		a.conf = c
	}

	port := flag.Int("port", a.conf.Server.Port, "port to listen on")
	flag.Parse()
	a.port = *port
	a.conf.Server.Port = *port

	if portAnswers(a.port) {
		log.Printf("port %d is already in use, the application may already be running", a.port)
		os.Exit(255)
	}
	killSamePath(a.exePath)

	sigs := make(chan os.Signal, 4)
	stopSignals := []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT}
	if a.hooks && os.Getenv("STANDIN_IGNORE_TERM") == "1" {
		signal.Ignore(stopSignals...)
	} else {
		signal.Notify(sigs, stopSignals...)
	}

	a.envConfig()

	if st, err := os.Stat(filepath.Join(a.execDir, "locales")); err != nil || !st.IsDir() {
		log.Printf("locales directory %s is missing", filepath.Join(a.execDir, "locales"))
		os.Exit(1)
	}

	if a.hooks {
		a.startHooks()
	}

	log.Printf("start-up: initialising (pid %d, dir %s, port %d)", os.Getpid(), a.execDir, a.port)
	if a.hooks {
		if d := envInt("STANDIN_START_DELAY_MS"); d > 0 {
			time.Sleep(time.Duration(d) * time.Millisecond)
		}
	}
	if a.conf.Mysql.Database != "" {
		if err := a.initDatabase(a.envInstall); err != nil {
			a.fatal(255, "database connection failed: %v", err)
		}
	}

	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", a.port))
	if err != nil {
		a.logError("listen on port %d failed: %v", a.port, err)
		os.Exit(0)
	}
	a.server = &http.Server{Handler: a, ReadHeaderTimeout: 30 * time.Second}
	log.Printf("start-up finished: AnQiCMS %s listening on :%d (installed: %v)", appVersion, a.port, a.isInstalled())
	go a.handleSignals(sigs)
	if err := a.server.Serve(ln); err != nil && err != http.ErrServerClosed {
		a.logError("server stopped: %v", err)
		os.Exit(0)
	}
	select {}
}

// envConfig rewrites config.json from MYSQL_* environment variables, as the real app does at every start.
func (a *App) envConfig() {
	host, database := os.Getenv("MYSQL_HOST"), os.Getenv("MYSQL_DATABASE")
	password := os.Getenv("MYSQL_PASSWORD")
	if password == "" {
		password = os.Getenv("MYSQL_ROOT_PASSWORD")
	}
	if host == "" || database == "" || password == "" {
		return
	}
	user := os.Getenv("MYSQL_USER")
	if user == "" {
		user = "root"
	}
	port := envInt("MYSQL_PORT")
	if port == 0 {
		port = 3306
	}
	a.conf.Mysql = MysqlConfig{Database: database, User: user, Password: password, Host: host, Port: port}
	if err := a.writeConfig(a.conf); err != nil {
		a.logError("cannot write %s: %v", a.configPath(), err)
	}
	a.envInstall = true
}

func (a *App) handleSignals(sigs <-chan os.Signal) {
	s := <-sigs
	log.Printf("exit on signal %v", s)
	if a.hooks && os.Getenv("STANDIN_GRACEFUL") == "1" && s == syscall.SIGTERM {
		ctx, cancel := contextWithTimeout(60 * time.Second)
		defer cancel()
		if err := a.server.Shutdown(ctx); err != nil {
			a.logError("graceful shutdown incomplete: %v", err)
		}
		log.Printf("drained, exiting")
	}
	if a.hooks {
		if d := envInt("STANDIN_EXIT_DELAY_MS"); d > 0 {
			time.Sleep(time.Duration(d) * time.Millisecond)
		}
	}
	os.Exit(0)
}

func (a *App) isInstalled() bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.installed
}
